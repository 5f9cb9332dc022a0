"""Checks of the contract's guarantees after faults, shared by the fault and cluster tests.

After a kill, a pause or a broker stop: one outcome per order, the right one; exact stock and wallets;
each confirmed order charged once; nothing dead-lettered; views that agree on every worker.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.topic_names import all_topic_names, changelog_names
from config.settings import Settings
from devtools.devstack import stop_processes
from devtools.kafka_local import free_port
from models.events import OrderPlaced
from support.scenario import (
    CUSTOMERS,
    FUNDED,
    PLENTY_STOCK,
    PUBLIC,
    RICH,
    RICH_FUNDS,
    SCARCE_SKU,
    SCARCE_STOCK,
    STOCKED_SKUS,
    TIGHT_FUNDS,
    Mix,
    Outcome,
    check_payments,
    check_sagas,
    check_stock,
    check_wallets,
    count_ended,
    seed,
    terminal,
    wait_for_seed,
)
from support.topics import group_offsets, read_topic, setup_topics, wait_quiet, wait_until, write_events
from support.worker import Worker

#: The session timeout is how long the group keeps a killed member's partitions; the
#: minimum the broker allows makes failover quick enough to test. Nothing else changes.
FAST_FAILOVER = {"session_timeout_s": 6.0}

#: 400 orders: 280 confirmed, 60 out of stock, 60 declined.
LOAD = Mix(ok=220, out_of_stock=40, broke=40, scarce=60, tight=40)


def kill_mid_load(bootstrap: str, settings: Settings, worker: Worker, orders: list[OrderPlaced]) -> tuple[int, int]:
    """Once about a third of the orders have ended, ``kill -9`` the worker; how many had ended before and after."""
    order_topic = settings.topic("order-events")
    third = len(orders) // 3

    def a_third_ended() -> int:
        ended = count_ended(bootstrap, order_topic)
        return ended if ended >= third else 0

    seen = wait_until(a_third_ended, 120, "a third of the orders to end", every=0.2)
    worker.kill()
    at_kill = count_ended(bootstrap, order_topic)
    assert at_kill < len(orders), f"the kill came after the whole load ({at_kill} ended); nothing was in flight"
    return seen, at_kill


def isolation_of(settings: Settings) -> str:
    """How a consumer of the app's output reads it: only committed transactions under exactly_once."""
    return "read_committed" if settings.processing_guarantee == "exactly_once" else "read_uncommitted"


def check_outcomes(bootstrap: str, settings: Settings, orders: list[OrderPlaced], expected: dict[str, str],
                    mix: Mix) -> tuple[dict[str, Outcome], int]:
    """Guarantees 1 and 4: every order has exactly one outcome, the right one; copies share its event id.

    Returns the outcome of each order and how many terminal events were copies.
    """
    ended = terminal(read_topic(bootstrap, settings.topic("order-events"), isolation_of(settings)))
    assert set(ended) == {o.order_id for o in orders}, "orders lost or invented"
    for order_id, bodies in ended.items():
        assert len({b["event_type"] for b in bodies}) == 1, ("confirmed and cancelled", order_id, bodies)
        assert len({b["event_id"] for b in bodies}) == 1, ("two outcomes", order_id, bodies)
    outcome = {oid: (b[0]["event_type"], b[0].get("reason")) for oid, b in ended.items()}
    for order_id, want in expected.items():
        got = outcome[order_id]
        assert (got[0] == "OrderConfirmed") if want == "CONFIRMED" else (got == ("OrderCancelled", want)), order_id
    kinds = Counter(kind if kind == "OrderConfirmed" else reason for kind, reason in outcome.values())
    assert kinds == mix.expected_kinds()
    # The saga's own end agrees: one terminal saga event per order (copies share its id), the matching one.
    saga_ends: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for record in read_topic(bootstrap, settings.topic("saga-events"), isolation_of(settings)):
        body = record.body
        if body.get("event_type") in ("SagaCompleted", "SagaFailed", "SagaTimedOut"):
            saga_ends[body["order_id"]].add((body["event_type"], body["event_id"]))
    assert set(saga_ends) == set(outcome)
    for order_id, ends in saga_ends.items():
        assert [kind for kind, _ in ends] == ["SagaCompleted" if outcome[order_id][0] == "OrderConfirmed"
                                               else "SagaFailed"], (order_id, ends)
    extra = sum(len(bodies) for bodies in ended.values()) - len(ended)
    return outcome, extra


def check_balances(bootstrap: str, settings: Settings, worker: Worker, orders: list[OrderPlaced],
                    outcome: dict[str, Outcome]) -> None:
    """Guarantees 2 and 3, and nothing dead-lettered, once every hold is committed or released."""
    try:
        wait_until(lambda: all(reserved_units(worker, sku) == 0 for sku in STOCKED_SKUS), 60,
                   "every hold to be committed or released")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; holds left: {holds_left(bootstrap, settings)}") from None
    confirmed = [o for o in orders if outcome[o.order_id][0] == "OrderConfirmed"]
    check_stock(worker, confirmed)
    check_wallets(worker, confirmed)
    check_payments(read_topic(bootstrap, settings.topic("payment-events")), orders, confirmed)
    check_sagas(worker, orders, outcome)
    for topic in PUBLIC:
        assert read_topic(bootstrap, settings.topic(topic) + ".DLQ") == [], topic


def holds_left(bootstrap: str, settings: Settings) -> dict[str, Any]:
    """Each sku's holds (order -> quantity) as the stock changelog last has them, and those orders' sagas."""
    last = {r.key: r.body for r in read_topic(bootstrap, f"{settings.group_id}-stock-changelog") if r.key}
    holds = {key.decode(): body["holds"] for key, body in last.items() if body.get("holds")}
    sagas = {r.key.decode(): r.body for r in read_topic(bootstrap, f"{settings.group_id}-sagas-changelog")
             if r.key and any(r.key.decode() in each for each in holds.values())}
    return {"holds": holds, "sagas": sagas}


def reserved_units(worker: Worker, sku: str) -> int | None:
    """Units held for a sku, or None while the view does not answer."""
    status, view = worker.get(f"/inventory/{sku}")
    return view["reserved"] if status == 200 else None


def all_ended(bootstrap: str, settings: Settings, orders: list[OrderPlaced]) -> bool:
    return count_ended(bootstrap, settings.topic("order-events"), isolation_of(settings)) >= len(orders)


def settle(bootstrap: str, settings: Settings, orders: list[OrderPlaced], what: str,
            worker: Worker | None = None) -> None:
    """Until every order has an outcome and nothing more is written (re-sent copies included).

    On timeout it names the orders without an outcome and what ``worker``'s saga view says of them.
    """
    try:
        wait_until(lambda: all_ended(bootstrap, settings, orders), 180, what, every=2.0)
    except AssertionError as timeout:
        ended = terminal(read_topic(bootstrap, settings.topic("order-events"), isolation_of(settings)))
        missing = [o.order_id for o in orders if o.order_id not in ended]
        views = {oid: view_or_error(worker, f"/orders/{oid}") for oid in missing[:5]} if worker else {}
        detail = views or missing[:5]
        history = trail(bootstrap, settings, missing[0]) if missing else ""
        raise AssertionError(f"{timeout}: {len(missing)} orders without an outcome, e.g. {detail}\n"
                             f"what every topic holds of {missing[:1]}:\n{history}\n"
                             f"input partitions behind (end offset, the group's committed offset): "
                             f"{behind(bootstrap, settings)}") from None
    wait_quiet(bootstrap, all_topic_names(settings), 60)


def behind(bootstrap: str, settings: Settings) -> dict[str, tuple[int, int | None]]:
    """Input partitions whose committed offset is short of their end: which one stalled, and where."""
    return {f"{tp.topic}[{tp.partition}]": (end, done) for tp, (end, done) in group_offsets(bootstrap, settings).items()
            if done is None or end - done > 1}


def trail(bootstrap: str, settings: Settings, order_id: str) -> str:
    """Every record about one order on every topic, committed or not (aborted ones included), for a failure."""
    names = [*all_topic_names(settings), *changelog_names(settings)]
    lines = []
    for topic in names:
        committed = {(r.partition, r.offset) for r in read_topic(bootstrap, topic, "read_committed")}
        for r in read_topic(bootstrap, topic, "read_uncommitted"):
            if r.value is not None and order_id.encode() in r.value or r.key == order_id.encode():
                body = r.body if r.value and r.value[:1] == b"{" else {}
                kind = body.get("event_type") or body.get("kind") or body.get("status") or "?"
                state = "committed" if (r.partition, r.offset) in committed else "NOT COMMITTED"
                lines.append(f"  {topic}[{r.partition}]@{r.offset} {kind} {body.get('step', '')} {state}")
    return "\n".join(lines)


def view_or_error(worker: Worker, path: str) -> Any:
    """A view's answer, or the error that stopped it, for a failure message."""
    try:
        return worker.get(path, timeout=5)
    except OSError as error:
        return repr(error)


@contextmanager
def two_workers(tmp_path: Path, settings: Settings) -> Iterator[tuple[Worker, Worker]]:
    """Two workers of one app (each its own data directory and web port), seeded, both ready; stopped after."""
    with several_workers(tmp_path, settings, 2) as (first, second):
        yield first, second


@contextmanager
def several_workers(tmp_path: Path, settings: Settings, count: int) -> Iterator[list[Worker]]:
    """``count`` workers of one app (each its own data directory and web port), seeded, all ready; stopped after.

    The first starts alone and applies the seed; the others join it one by one.
    """
    others = [dataclasses.replace(settings, data_dir=Path(f"{settings.data_dir}-{chr(ord('a') + n)}"),
                                  web_port=free_port()) for n in range(1, count)]
    setup_topics(settings)
    write_events(settings, seed())
    names = ["first", "second", "third", "fourth"]
    workers = [Worker(member, tmp_path / f"{names[n]}.log") for n, member in enumerate([settings, *others])]
    try:
        workers[0].start()
        wait_for_seed(workers[0])
        for worker in workers[1:]:
            worker.start()
        wait_ready(*workers)
        yield workers
    finally:  # all at once: stopped one by one, each would wait for the others to take its partitions
        stop_processes([worker.process for worker in workers if worker.process is not None])


def wait_ready(*workers: Worker) -> None:
    """Until every worker says it can serve views (no rebalance in progress)."""
    wait_until(lambda: all(w.get("/readyz")[0] == 200 for w in workers), 90, "every worker to be ready")


def key_paths() -> list[str]:
    """A view for every sku, wallet and customer of the seed."""
    return ([f"/inventory/{sku}" for sku in STOCKED_SKUS] + [f"/wallets/{c}" for c in FUNDED]
            + [f"/customers/{c}" for c in CUSTOMERS])


def seeded_views() -> dict[str, tuple[int, Any]]:
    """What each key's view is right after the seed."""
    views: dict[str, tuple[int, Any]] = {}
    for sku in STOCKED_SKUS:
        views[f"/inventory/{sku}"] = (200, {"sku": sku, "available": SCARCE_STOCK if sku == SCARCE_SKU
                                            else PLENTY_STOCK, "reserved": 0})
    for customer in FUNDED:
        funds = RICH_FUNDS if customer in RICH else TIGHT_FUNDS
        views[f"/wallets/{customer}"] = (200, {"customer_id": customer, "balance": f"{funds:.2f}"})
    for customer in CUSTOMERS:
        views[f"/customers/{customer}"] = (200, {"customer_id": customer, "name": f"Näme {customer}",
                                                  "email": f"{customer}@x.io"})
    return views


def check_routed_views(first: Worker, second: Worker, want: dict[str, tuple[int, Any]]) -> None:
    """Both workers answer every key's view with the same, expected value."""
    for path, expected in want.items():
        assert served_view(first, path) == expected, (first.url, path)
        assert served_view(second, path) == expected, (second.url, path)


def served_view(worker: Worker, path: str) -> tuple[int, Any]:
    """A view's answer once the worker serves it: a 503 only means a rebalance is under way."""

    def served() -> tuple[int, Any] | None:
        answer = worker.get(path)
        return answer if answer[0] != 503 else None

    return wait_until(served, 30, f"{worker.url}{path} to be served", every=0.5)
