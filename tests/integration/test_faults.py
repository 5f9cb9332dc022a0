"""Faults on a real broker: kill -9 mid-load, a group losing a member, restarts with and without local state.

Each test runs the scenario's kind of order mix, whose outcome counts are exact whatever the
processing order, through worker processes that are killed or restarted on the way, and then
checks the contract's guarantees 1-4 as the scenario does: one outcome per order, exact stock
and wallets, each confirmed order charged once, nothing dead-lettered.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from app.topic_names import all_topic_names, changelog_names
from config.settings import Settings
from devtools.kafka_local import LocalKafka, free_port
from models.events import OrderPlaced
from support.scenario import (
    ALL_SKUS,
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
    build_orders,
    check_payments,
    check_sagas,
    check_stock,
    check_wallets,
    copies,
    count_ended,
    seed,
    terminal,
    wait_for_seed,
)
from support.stats import check_stats, counted, stats
from support.topics import group_offsets, read_topic, setup_topics, wait_quiet, wait_until, write_events
from support.worker import Worker, new_settings

pytestmark = pytest.mark.integration

#: The session timeout is how long the group keeps a killed member's partitions; the
#: minimum the broker allows makes failover quick enough to test. Nothing else changes.
FAST_FAILOVER = {"session_timeout_s": 6.0}

#: 400 orders: 280 confirmed, 60 out of stock, 60 declined.
LOAD = Mix(ok=220, out_of_stock=40, broke=40, scarce=60, tight=40)


def _kill_mid_load(bootstrap: str, settings: Settings, worker: Worker, orders: list[OrderPlaced]) -> tuple[int, int]:
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


def _isolation(settings: Settings) -> str:
    """How a consumer of the app's output reads it: only committed transactions under exactly_once."""
    return "read_committed" if settings.processing_guarantee == "exactly_once" else "read_uncommitted"


def _check_outcomes(bootstrap: str, settings: Settings, orders: list[OrderPlaced], expected: dict[str, str],
                    mix: Mix) -> tuple[dict[str, Outcome], int]:
    """Guarantees 1 and 4: every order has exactly one outcome, the right one; copies share its event id.

    Returns the outcome of each order and how many terminal events were copies.
    """
    ended = terminal(read_topic(bootstrap, settings.topic("order-events"), _isolation(settings)))
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
    for record in read_topic(bootstrap, settings.topic("saga-events"), _isolation(settings)):
        body = record.body
        if body.get("event_type") in ("SagaCompleted", "SagaFailed", "SagaTimedOut"):
            saga_ends[body["order_id"]].add((body["event_type"], body["event_id"]))
    assert set(saga_ends) == set(outcome)
    for order_id, ends in saga_ends.items():
        assert [kind for kind, _ in ends] == ["SagaCompleted" if outcome[order_id][0] == "OrderConfirmed"
                                               else "SagaFailed"], (order_id, ends)
    extra = sum(len(bodies) for bodies in ended.values()) - len(ended)
    return outcome, extra


def _check_balances(bootstrap: str, settings: Settings, worker: Worker, orders: list[OrderPlaced],
                    outcome: dict[str, Outcome]) -> None:
    """Guarantees 2 and 3, and nothing dead-lettered, once every hold is committed or released."""
    try:
        wait_until(lambda: all(_reserved(worker, sku) == 0 for sku in STOCKED_SKUS), 60,
                   "every hold to be committed or released")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; holds left: {_holds_left(bootstrap, settings)}") from None
    confirmed = [o for o in orders if outcome[o.order_id][0] == "OrderConfirmed"]
    check_stock(worker, confirmed)
    check_wallets(worker, confirmed)
    check_payments(read_topic(bootstrap, settings.topic("payment-events")), orders, confirmed)
    check_sagas(worker, orders, outcome)
    for topic in PUBLIC:
        assert read_topic(bootstrap, settings.topic(topic) + ".DLQ") == [], topic


def _holds_left(bootstrap: str, settings: Settings) -> dict[str, Any]:
    """Each sku's holds (order -> quantity) as the stock changelog last has them, and those orders' sagas."""
    last = {r.key: r.body for r in read_topic(bootstrap, f"{settings.group_id}-stock-changelog") if r.key}
    holds = {key.decode(): body["holds"] for key, body in last.items() if body.get("holds")}
    sagas = {r.key.decode(): r.body for r in read_topic(bootstrap, f"{settings.group_id}-sagas-changelog")
             if r.key and any(r.key.decode() in each for each in holds.values())}
    return {"holds": holds, "sagas": sagas}


def _reserved(worker: Worker, sku: str) -> int | None:
    """Units held for a sku, or None while the view does not answer."""
    status, view = worker.get(f"/inventory/{sku}")
    return view["reserved"] if status == 200 else None


def _all_ended(bootstrap: str, settings: Settings, orders: list[OrderPlaced]) -> bool:
    return count_ended(bootstrap, settings.topic("order-events"), _isolation(settings)) >= len(orders)


def _settle(bootstrap: str, settings: Settings, orders: list[OrderPlaced], what: str,
            worker: Worker | None = None) -> None:
    """Until every order has an outcome and nothing more is written (re-sent copies included).

    On timeout it names the orders without an outcome and what ``worker``'s saga view says of them.
    """
    try:
        wait_until(lambda: _all_ended(bootstrap, settings, orders), 180, what, every=2.0)
    except AssertionError as timeout:
        ended = terminal(read_topic(bootstrap, settings.topic("order-events"), _isolation(settings)))
        missing = [o.order_id for o in orders if o.order_id not in ended]
        views = {oid: _view_or_error(worker, f"/orders/{oid}") for oid in missing[:5]} if worker else {}
        detail = views or missing[:5]
        trail = _trail(bootstrap, settings, missing[0]) if missing else ""
        raise AssertionError(f"{timeout}: {len(missing)} orders without an outcome, e.g. {detail}\n"
                             f"what every topic holds of {missing[:1]}:\n{trail}\n"
                             f"input partitions behind (end offset, the group's committed offset): "
                             f"{_behind(bootstrap, settings)}") from None
    wait_quiet(bootstrap, all_topic_names(settings), 60)


def _behind(bootstrap: str, settings: Settings) -> dict[str, tuple[int, int | None]]:
    """Input partitions whose committed offset is short of their end: which one stalled, and where."""
    return {f"{tp.topic}[{tp.partition}]": (end, done) for tp, (end, done) in group_offsets(bootstrap, settings).items()
            if done is None or end - done > 1}


def _trail(bootstrap: str, settings: Settings, order_id: str) -> str:
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


def _view_or_error(worker: Worker, path: str) -> Any:
    """A view's answer, or the error that stopped it, for a failure message."""
    try:
        return worker.get(path, timeout=5)
    except OSError as error:
        return repr(error)


def _write_in_chunks(
    settings: Settings, events: list[OrderPlaced], size: int, pause: float, halfway: threading.Event
) -> None:
    """Write the events ``size`` at a time, ``pause`` seconds apart; set ``halfway`` once half are written."""
    for start in range(0, len(events), size):
        write_events(settings, events[start:start + size])
        if start + size >= len(events) // 2:
            halfway.set()
        time.sleep(pause)


def _sent_twice(orders: list[OrderPlaced]) -> list[OrderPlaced]:
    """Every 13th order again as it was, and every 17th again under a new event id (a client's retry)."""
    return [*orders[::13], *(dataclasses.replace(o, event_id=f"{o.event_id}-retry") for o in orders[::17])]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_kill_9_mid_load_then_restart_loses_nothing_and_applies_nothing_twice(
    kafka: LocalKafka, tmp_path: Path, guarantee: str
) -> None:
    """Under exactly_once a read_committed reader also sees each of the application's events once."""
    # a short commit interval puts many commits in the restarted worker's first second, where a commit
    # racing the seek to committed offsets once lost inputs under either guarantee
    settings = new_settings(kafka.bootstrap, tmp_path, f"crash-{guarantee}", processing_guarantee=guarantee,
                            commit_interval_s=0.2, **FAST_FAILOVER)
    setup_topics(settings)
    write_events(settings, seed())
    log = tmp_path / "worker.log"
    worker = Worker(settings, log).start()
    restarted = Worker(settings, log)
    try:
        wait_for_seed(worker)
        orders, expected = build_orders(random.Random(400), LOAD)
        twice = _sent_twice(orders)
        # written over a few seconds: the worker dies once half are written, with the rest still to come
        halfway = threading.Event()
        writer = threading.Thread(target=_write_in_chunks, args=(settings, [*orders, *twice], 40, 0.5, halfway))
        writer.start()
        try:
            assert halfway.wait(120), "the orders were not written"
            worker.kill()
            at_kill = count_ended(kafka.bootstrap, settings.topic("order-events"), _isolation(settings))
        finally:
            writer.join()
        assert at_kill < len(orders), "the kill came after the whole load; nothing was in flight"

        restarted.start()  # same settings, same data dir
        _settle(kafka.bootstrap, settings, orders, "every order to end", restarted)

        outcome, outcome_copies = _check_outcomes(kafka.bootstrap, settings, orders, expected, LOAD)
        _check_balances(kafka.bootstrap, settings, restarted, orders, outcome)
        check_stats(restarted, orders, outcome)  # counted once however the kill split a saga's writes
        repeated = copies(kafka.bootstrap, settings, _isolation(settings))
        print(f"\n[crash {guarantee}] {len(orders)} orders ({len(twice)} sent twice), kill -9 with {at_kill} ended"
              f" ended, 1 restart: 0 lost, {outcome_copies} outcome copies, copies by type {dict(repeated)}")
        if guarantee == "exactly_once":
            assert repeated == Counter(), "a read_committed reader sees every event of the application once"
    finally:
        worker.stop()
        restarted.stop()


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_group_member_killed_mid_load_the_other_takes_over(kafka: LocalKafka, tmp_path: Path, guarantee: str) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, f"group-{guarantee}", processing_guarantee=guarantee,
                            **FAST_FAILOVER)
    with _two_workers(tmp_path, settings) as (first, second):
        # Idle: each worker answers for every key, its own or routed to the other.
        _check_routed_views(first, second, _seeded_views())

        orders, expected = build_orders(random.Random(4242), LOAD)
        write_events(settings, orders)
        seen, at_kill = _kill_mid_load(kafka.bootstrap, settings, first, orders)

        _settle(kafka.bootstrap, settings, orders, "the survivor to end every order", second)
        outcome, outcome_copies = _check_outcomes(kafka.bootstrap, settings, orders, expected, LOAD)
        _check_balances(kafka.bootstrap, settings, second, orders, outcome)

        # The killed member comes back with its stale local state; both answer alike again.
        first.start()
        _wait_ready(first, second)
        settled = {path: _view(second, path) for path in _key_paths()}
        assert all(status == 200 for status, _ in settled.values()), settled
        _check_routed_views(first, second, settled)
        wait_quiet(kafka.bootstrap, all_topic_names(settings), 60)
        assert _check_outcomes(kafka.bootstrap, settings, orders, expected, LOAD)[0] == outcome
        _check_balances(kafka.bootstrap, settings, first, orders, outcome)
        # both answer for the whole system, each gathering the other's partitions, and agree
        assert counted(check_stats(first, orders, outcome)) == counted(check_stats(second, orders, outcome))
        repeated = copies(kafka.bootstrap, settings, _isolation(settings))
        if guarantee == "exactly_once":
            assert repeated == Counter(), "a read_committed reader sees every event once"
        print(f"\n[group {guarantee}] {len(orders)} orders on 2 workers, kill -9 of one at {seen}-{at_kill} ended, "
              f"survivor finished, killed one rejoined: 0 lost, {outcome_copies} outcome copies, "
              f"copies by type {dict(repeated)}, 0 effects twice")


def test_a_paused_worker_that_comes_back_after_its_partitions_moved_is_fenced(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    """A zombie: SIGSTOP one of two workers under exactly_once until the group gives its partitions to
    the other, then SIGCONT it. Its open transaction times out (it holds back the new owner that long),
    and its offsets name a generation the group has left, so nothing it did while it was away is
    committed: every order still ends once, read_committed, with exact balances and no copy of any event."""
    settings = new_settings(kafka.bootstrap, tmp_path, "zombie", processing_guarantee="exactly_once",
                            commit_interval_s=0.2, **FAST_FAILOVER)
    with _two_workers(tmp_path, settings) as (first, second):
        orders, expected = build_orders(random.Random(777), LOAD)
        write_events(settings, [*orders, *_sent_twice(orders)])
        order_topic = settings.topic("order-events")
        wait_until(lambda: count_ended(kafka.bootstrap, order_topic, "read_committed") >= len(orders) // 4, 120,
                   "a quarter of the orders to end", every=0.2)
        assert first.process is not None
        assignments = _assignments(second)
        os.killpg(first.process.pid, signal.SIGSTOP)
        paused_at = count_ended(kafka.bootstrap, order_topic, "read_committed")
        try:
            # the group drops the silent member after its session timeout; the other owns everything
            wait_until(lambda: _assignments(second) > assignments, 120, "the group to give the other everything")
            taken_over = count_ended(kafka.bootstrap, order_topic, "read_committed")
            # 20 more outcomes, or every one when fewer are left: both workers may have been nearly done
            going_on = min(taken_over + 20, len(orders))
            wait_until(lambda: count_ended(kafka.bootstrap, order_topic, "read_committed") >= going_on, 120,
                       f"the other worker to go on with the zombie's orders ({paused_at} of {len(orders)} had ended"
                       f" at the pause, {taken_over} at the takeover)", every=0.5)
        finally:
            os.killpg(first.process.pid, signal.SIGCONT)
        _settle(kafka.bootstrap, settings, orders, "every order to end after the zombie came back", second)
        outcome, _ = _check_outcomes(kafka.bootstrap, settings, orders, expected, LOAD)
        _check_balances(kafka.bootstrap, settings, second, orders, outcome)
        assert copies(kafka.bootstrap, settings, _isolation(settings)) == Counter()
        fenced = first.log_path.read_text(errors="replace").count("This worker was fenced")
        print(f"\n[zombie] {len(orders)} orders on 2 workers, one paused at {paused_at} ended, taken over at"
              f" {taken_over}, and back: 0 lost, 0 copies read_committed, balances exact; the zombie fenced"
              f" {fenced} times, exit status {first.process.poll()}")


def _assignments(worker: Worker) -> int:
    """How many assignments the worker has taken up so far, by its log."""
    return worker.log_path.read_text(errors="replace").count("Executing _on_partitions_assigned")


@contextmanager
def _two_workers(tmp_path: Path, settings: Settings) -> Iterator[tuple[Worker, Worker]]:
    """Two workers of one app (each its own data directory and web port), seeded, both ready; stopped after."""
    other = dataclasses.replace(settings, data_dir=Path(f"{settings.data_dir}-b"), web_port=free_port())
    setup_topics(settings)
    write_events(settings, seed())
    first = Worker(settings, tmp_path / "first.log")
    second = Worker(other, tmp_path / "second.log")
    try:
        first.start()
        wait_for_seed(first)
        second.start()
        _wait_ready(first, second)
        yield first, second
    finally:
        first.stop()
        second.stop()


def _wait_ready(*workers: Worker) -> None:
    """Until every worker says it can serve views (no rebalance in progress)."""
    wait_until(lambda: all(w.get("/health")[0] == 200 for w in workers), 90, "every worker to be ready")


def _key_paths() -> list[str]:
    """A view for every sku, wallet and customer of the seed."""
    return ([f"/inventory/{sku}" for sku in STOCKED_SKUS] + [f"/wallets/{c}" for c in FUNDED]
            + [f"/customers/{c}" for c in CUSTOMERS])


def _seeded_views() -> dict[str, tuple[int, Any]]:
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


def _check_routed_views(first: Worker, second: Worker, want: dict[str, tuple[int, Any]]) -> None:
    """Both workers answer every key's view with the same, expected value."""
    for path, expected in want.items():
        assert _view(first, path) == expected, (first.url, path)
        assert _view(second, path) == expected, (second.url, path)


def _view(worker: Worker, path: str) -> tuple[int, Any]:
    """A view's answer once the worker serves it: a 503 only means a rebalance is under way."""

    def served() -> tuple[int, Any] | None:
        answer = worker.get(path)
        return answer if answer[0] != 503 else None

    return wait_until(served, 30, f"{worker.url}{path} to be served", every=0.5)


def test_restart_keeps_views_with_data_dir_kept_and_rebuilt_from_changelogs(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, "restart")
    setup_topics(settings)
    write_events(settings, seed())
    worker = Worker(settings, tmp_path / "worker.log")
    mix = Mix(ok=120, out_of_stock=20, broke=20, scarce=50, tight=30)
    try:
        worker.start()
        wait_for_seed(worker)
        orders, expected = build_orders(random.Random(240), mix)
        write_events(settings, orders)
        _settle(kafka.bootstrap, settings, orders, "every order to end", worker)
        outcome, _ = _check_outcomes(kafka.bootstrap, settings, orders, expected, mix)
        _check_balances(kafka.bootstrap, settings, worker, orders, outcome)

        paths = [f"/inventory/{sku}" for sku in ALL_SKUS] + [f"/wallets/{c}" for c in CUSTOMERS]
        paths += [f"/customers/{c}" for c in CUSTOMERS] + [f"/orders/{o.order_id}" for o in orders[::5]]
        paths += ["/inventory/SKU-UNKNOWN", "/wallets/nobody", "/customers/nobody", "/orders/no-such-order"]
        before = {path: _view(worker, path) for path in paths}
        assert all(status == 200 for status, _ in list(before.values())[:-4]), before
        assert all(status == 404 for status, _ in list(before.values())[-4:]), before
        windows = counted(check_stats(worker, orders, outcome))

        worker.stop()
        worker.start()  # local state kept
        assert {path: _view(worker, path) for path in paths} == before
        assert counted(stats(worker)) == windows

        worker.stop()
        shutil.rmtree(settings.data_dir)
        assert not settings.data_dir.exists()
        worker.start()  # nothing local: every table rebuilt from its changelog
        assert {path: _view(worker, path) for path in paths} == before
        assert counted(stats(worker)) == windows
        print(f"\n[restart] {len(orders)} orders, {len(paths)} views equal after a restart with the data dir "
              "and after one without it")
    finally:
        worker.stop()


def test_bulk_restore_catches_up_from_an_old_copy_and_from_nothing(kafka: LocalKafka, tmp_path: Path) -> None:
    """With the bulk threshold at one record, every far-behind partition is rebuilt by our store, not Faust's."""
    settings = new_settings(kafka.bootstrap, tmp_path, "bulk", bulk_restore_min_records=1)
    setup_topics(settings)
    write_events(settings, seed())
    log = tmp_path / "worker.log"
    worker = Worker(settings, log)
    mix = Mix(ok=80, out_of_stock=20, broke=20, scarce=20, tight=20)
    orders, expected = build_orders(random.Random(77), mix)
    snapshot = tmp_path / "snapshot"
    try:
        worker.start()
        wait_for_seed(worker)
        write_events(settings, orders[:60])
        _settle(kafka.bootstrap, settings, orders[:60], "the first 60 orders to end", worker)
        worker.stop()
        shutil.copytree(settings.data_dir, snapshot)  # local state as it was after 60 orders

        worker.start()
        write_events(settings, orders[60:])
        _settle(kafka.bootstrap, settings, orders, "every order to end", worker)
        outcome, _ = _check_outcomes(kafka.bootstrap, settings, orders, expected, mix)
        _check_balances(kafka.bootstrap, settings, worker, orders, outcome)
        paths = _key_paths() + [f"/orders/{o.order_id}" for o in orders]
        before = {path: _view(worker, path) for path in paths}
        assert all(status == 200 for status, _ in before.values()), before

        for label, local in (("an old copy", snapshot), ("nothing", None)):
            worker.stop()
            shutil.rmtree(settings.data_dir)
            if local is not None:
                shutil.copytree(local, settings.data_dir)
            restored_before = log.read_text().count("restored ")
            worker.start()
            assert {path: _view(worker, path) for path in paths} == before, label
            assert log.read_text().count("restored ") > restored_before, f"no bulk restore from {label}"
        # The rebuilt tables go on working: a repeat of every order changes nothing and re-sends its outcome.
        write_events(settings, orders)
        wait_quiet(kafka.bootstrap, all_topic_names(settings), 60)
        assert _check_outcomes(kafka.bootstrap, settings, orders, expected, mix)[0] == outcome
        _check_balances(kafka.bootstrap, settings, worker, orders, outcome)
    finally:
        worker.stop()
