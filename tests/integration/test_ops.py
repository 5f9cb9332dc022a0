"""The operator commands on a real broker, run as a user runs them: ``streamsaga <command>``."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from app.topic_names import all_topic_names
from config.settings import Settings
from devtools.kafka_local import LocalKafka
from models.events import FundsAdded, UserRegistered
from support.scenario import (
    ALL_SKUS,
    CUSTOMERS,
    Mix,
    build_orders,
    ids,
    order,
    seed,
    terminal,
    wait_for_seed,
)
from support.stats import counted, stats, totals
from support.topics import read_topic, setup_topics, wait_quiet, wait_until, write_events, write_raw
from support.worker import Worker, new_settings

pytestmark = pytest.mark.integration
STREAMSAGA = str(Path(sys.executable).with_name("streamsaga"))
#: the public input topics in the order a replay must follow: who and what exist before the orders
CAUSAL = ["user-events", "payment-events", "inventory-events", "order-events"]
NO_CONTENTION = Mix(ok=60, out_of_stock=10, broke=10, scarce=0, tight=0)


def streamsaga(settings: Settings, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``streamsaga ARGS`` with these settings in its environment."""
    env = {"PATH": str(Path(sys.executable).parent), **settings.to_env()}
    return subprocess.run([STREAMSAGA, *args], capture_output=True, text=True, timeout=timeout, env=env)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], text: str) -> None:
    """Exit status 2 and one line on stderr that says why."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and text in lines[0], (result.returncode, result.stderr)


def views(worker: Worker, orders: list[str]) -> dict[str, Any]:
    """Every table view the scenario touches, and what /stats counted."""
    paths = [f"/inventory/{sku}" for sku in ALL_SKUS] + [f"/wallets/{c}" for c in CUSTOMERS]
    paths += [f"/customers/{c}" for c in CUSTOMERS]
    seen: dict[str, Any] = {path: worker.get(path) for path in paths}
    seen.update({f"/orders/{o}": _saga(worker.get(f"/orders/{o}")) for o in orders})
    return seen


def _saga(answer: tuple[int, Any]) -> tuple[int, Any]:
    status, body = answer
    return status, {key: body[key] for key in ("status", "step", "steps", "reason")} if status == 200 else body


def outcome_ids(bootstrap: str, settings: Settings) -> dict[str, set[str]]:
    """Distinct event ids of each order's outcome events."""
    return {o: {b["event_id"] for b in bodies}
            for o, bodies in terminal(read_topic(bootstrap, settings.topic("order-events"))).items()}


def test_topics_and_schemas(kafka: LocalKafka, tmp_path: Path) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, "ops-topics")
    assert "created" in ok(streamsaga(settings, "topics", "create"))
    rows = {row["topic"]: row for row in orjson.loads(ok(streamsaga(settings, "topics", "list", "--json")))}
    assert set(all_topic_names(settings)) < set(rows)
    assert Counter(row["kind"] for row in rows.values()) == {"public": 5, "internal": 4, "dlq": 9, "changelog": 7,
                                                           "ops": 1}
    changelog = next(row for row in rows.values() if row["kind"] == "changelog")
    assert (changelog["partitions"], changelog["replication"], changelog["cleanup_policy"]) == (4, 1, "compact")
    assert rows[settings.topic("order-events")]["cleanup_policy"] == "delete"
    assert rows[settings.internal_topic("dlq-redrives")]["exists"] is False, "made by the first redrive"
    write_events(settings, seed()[:3])
    described = orjson.loads(ok(streamsaga(settings, "topics", "describe", "user-events", "--json")))
    assert len(described["partitions"]) == 4 and sum(p["end_offset"] for p in described["partitions"]) == 3
    assert all(p["leader"] >= 0 and p["isr"] == p["replicas"] for p in described["partitions"])
    table = ok(streamsaga(settings, "topics", "list"))
    assert table.splitlines()[0].split() == ["topic", "kind", "partitions", "replication", "cleanup", "end",
                                             "offsets"]
    refused(streamsaga(settings, "topics", "describe", "no-such-topic"), "unknown topic 'no-such-topic'")

    out = tmp_path / "schemas"
    assert "wrote 20 schemas" in ok(streamsaga(settings, "schemas", "--out", str(out)))
    schema = orjson.loads((out / "OrderPlaced.schema.json").read_bytes())
    placed = order("o-1", "c-1", [("SKU-A", 2, Decimal("1.50"))])
    assert Draft202012Validator(schema).is_valid(placed.body())
    assert not Draft202012Validator(schema).is_valid({**placed.body(), "total_amount": 3.0})


def test_replay_twice_changes_nothing_and_a_replay_into_a_fresh_app_rebuilds_its_views(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    first = new_settings(kafka.bootstrap, tmp_path, "ops-replay")
    setup_topics(first)
    write_events(first, seed())
    worker = Worker(first, tmp_path / "first.log").start()
    try:
        wait_for_seed(worker)
        orders, _ = build_orders(random.Random(31), NO_CONTENTION)
        write_events(first, orders)
        ids_of = [o.order_id for o in orders]
        wait_until(lambda: len(outcome_ids(kafka.bootstrap, first)) == len(orders), 180, "every order to end", 2)
        wait_quiet(kafka.bootstrap, all_topic_names(first), 60)
        before, windows = views(worker, ids_of), counted(stats(worker))
        assert all(status == 200 for status, _ in before.values())

        dry = ok(streamsaga(first, "replay", "--topic", "order-events", "--dry-run"))
        assert f"would replay {len(orders) * 2} records" in dry, dry  # each order and its outcome
        for _ in range(2):
            for topic in CAUSAL:
                assert "replayed" in ok(streamsaga(first, "replay", "--topic", topic))
        wait_quiet(kafka.bootstrap, all_topic_names(first), 90)
        assert views(worker, ids_of) == before, "a replay of what was processed changes no view"
        assert counted(stats(worker)) == windows, "nor any window"
        assert all(len(each) == 1 for each in outcome_ids(kafka.bootstrap, first).values()), "nor adds an outcome"
        replayed = [r for r in read_topic(kafka.bootstrap, first.topic("order-events"))
                    if "replay.source.offset" in r.headers]
        # the first replay copied 2 records per order, the second copied those and the copies
        assert len(replayed) == len(orders) * 2 * 3 and all(r.headers["replay.source.topic"] == first.topic(
            "order-events").encode() for r in replayed)

        refused(streamsaga(first, "replay", "--topic", "orders"), "unknown topic 'orders'")
        refused(streamsaga(first, "replay", "--topic", "order-events", "--from-offset", "5", "--to-offset", "5"),
                "must be below")
        refused(streamsaga(first, "replay", "--topic", "order-events", "--from-time", "2999-01-01T00:00:00Z"),
                "in the future")
        refused(streamsaga(first, "replay", "--topic", "order-events", "--from-time", "PT1H", "--from-offset", "1"),
                "not both")
        refused(streamsaga(first, "replay", "--topic", "order-events", "--partition", "9"), "no partition 9")
    finally:
        worker.stop()

    fresh = new_settings(kafka.bootstrap, tmp_path, "ops-fresh")
    setup_topics(fresh)
    # the whole history, into another app's topics: the seed applied before the orders, as the README says,
    # since a worker reads its topics side by side and Kafka keeps no order across them
    for topic in CAUSAL[:-1]:
        ok(streamsaga(first, "replay", "--topic", topic, "--to", fresh.topic(topic)))
    rebuilt = Worker(fresh, tmp_path / "fresh.log").start()
    try:
        wait_for_seed(rebuilt)
        ok(streamsaga(first, "replay", "--topic", CAUSAL[-1], "--to", fresh.topic(CAUSAL[-1])))
        wait_until(lambda: len(outcome_ids(kafka.bootstrap, fresh)) == len(orders), 180, "the fresh app's orders", 2)
        wait_quiet(kafka.bootstrap, all_topic_names(fresh), 60)
        assert views(rebuilt, ids_of) == before
        assert totals(stats(rebuilt)) == totals(list(windows.values()))
    finally:
        rebuilt.stop()


def test_a_dead_letter_redriven_once_its_fault_is_gone_completes_and_is_not_sent_twice(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, "ops-dlq", retry_initial_s=0.1, retry_max_s=0.2)
    setup_topics(settings)
    write_events(settings, seed() + [UserRegistered(**ids(), customer_id="flaky", name="Flo", email="flo@x.io"),
                                     FundsAdded(**ids(), customer_id="flaky", amount=Decimal("100.00"))])
    fault = tmp_path / "fault"
    fault.touch()
    launcher = [sys.executable, str(Path(__file__).parents[1] / "support" / "flaky_worker.py")]
    worker = Worker(settings, tmp_path / "worker.log", program=launcher,
                    env={"STREAMSAGA_TEST_FAULT_FILE": str(fault), "PYTHONPATH": ":".join(sys.path)})
    worker.start()
    try:
        wait_for_seed(worker)
        wait_until(lambda: worker.get("/wallets/flaky")[0] == 200, 30, "the flaky wallet")
        write_events(settings, [order("flaky-1", "flaky", [("SKU-A", 1, Decimal("4.00"))])])
        dlq = settings.internal_topic("wallet-commands") + ".DLQ"

        def dead_lettered() -> dict[str, Any] | None:
            listing: dict[str, Any] = orjson.loads(ok(streamsaga(settings, "dlq", "list", "--json")))
            return listing if listing[dlq]["count"] else None

        listed = wait_until(dead_lettered, 60, "the charge to be dead-lettered")
        assert listed[dlq] == {"count": 1, "by_reason": {"wallet store unavailable (a fault the test injected)": 1}}
        assert sum(each["count"] for each in listed.values()) == 1
        shown = ok(streamsaga(settings, "dlq", "show", "--topic", "wallet-commands"))
        assert "failure.class: OSError" in shown and '"customer_id":"flaky"' in shown and "1 shown" in shown
        assert "0 shown" in ok(streamsaga(settings, "dlq", "show", "--reason", "nothing like this"))
        assert worker.get("/orders/flaky-1")[1]["status"] == "IN_PROGRESS"

        fault.unlink()  # the outage is over
        dry = ok(streamsaga(settings, "dlq", "redrive", "--topic", "wallet-commands", "--dry-run"))
        assert "1 letters chosen, 0 redriven before, 1 to send" in dry and "would send" in dry
        assert "redrove 1 letters" in ok(streamsaga(settings, "dlq", "redrive", "--topic", "wallet-commands"))
        assert worker.get("/orders/flaky-1?wait=30")[1]["status"] == "COMPLETED"
        assert worker.get("/wallets/flaky")[1]["balance"] == "96.00"
        again = ok(streamsaga(settings, "dlq", "redrive"))
        assert "1 letters chosen, 1 redriven before, 0 to send" in again
        sent_back = [r for r in read_topic(kafka.bootstrap, settings.internal_topic("wallet-commands"))
                     if "redrive.dlq.offset" in r.headers]
        assert len(sent_back) == 1 and "failure.reason" not in sent_back[0].headers
        refused(streamsaga(settings, "dlq", "show", "--topic", "saga-eventz"), "unknown topic")
    finally:
        worker.stop()


def test_load_then_an_audit_that_passes_and_one_that_catches_a_tampered_table(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, "ops-audit")
    setup_topics(settings)
    write_events(settings, seed())
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        wait_for_seed(worker)
        loaded = ok(streamsaga(settings, "load", "--orders", "150", "--fail-share", "0.3", "--seed", "4"))
        assert "outcomes: 150 of 150 orders" in loaded and "p50" in loaded and "p99" in loaded, loaded
        kinds = loaded.split("outcomes: ")[1].splitlines()[0]
        assert "CONFIRMED" in kinds and ("OUT_OF_STOCK" in kinds or "PAYMENT_DECLINED" in kinds)
        orders, _ = build_orders(random.Random(8), Mix(ok=40, out_of_stock=5, broke=5, scarce=45, tight=25))
        write_events(settings, orders)
        audit = ok(streamsaga(settings, "tables", "audit", "--wait", "120"))
        assert "audit passed" in audit, audit
        refused(streamsaga(settings, "tables", "rebuild"), "stop it first")
    finally:
        worker.stop()

    # someone edits the stock changelog behind the worker's back; the rebuilt tables take it in
    changelog = f"{settings.group_id}-stock-changelog"
    last = [r for r in read_topic(kafka.bootstrap, changelog) if r.key == b"SKU-A"][-1]
    tampered = orjson.loads(last.value or b"{}")
    tampered["available"] += 7
    write_raw(kafka.bootstrap, changelog, [(b"SKU-A", orjson.dumps(tampered))], partition=last.partition)
    rebuilt = ok(streamsaga(settings, "tables", "rebuild"))
    assert "rebuilt 7 tables" in rebuilt, rebuilt
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        result = streamsaga(settings, "tables", "audit", "--wait", "10")  # a tampered value does not go away
        assert result.returncode == 1, result.stdout + result.stderr
        differences = [line for line in result.stdout.splitlines() if line.startswith("stock ")]
        assert len(differences) == 1 and differences[0].startswith("stock SKU-A:"), result.stdout
        assert "audit FAILED: 1 differences" in result.stdout
    finally:
        worker.stop()
