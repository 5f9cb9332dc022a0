"""500 orders with a known mix of outcomes through a real worker on a real broker.

Outcomes are exact whatever the processing order: plenty of stock or none, rich or broke
customers, and two contended resources (a scarce sku, a tight wallet) whose winners vary
but whose counts do not.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from devtools.kafka_local import LocalKafka
from models.events import OrderPlaced, format_time, utc_now
from support.scenario import (
    PLENTY,
    PUBLIC,
    RICH,
    SCARCE_SKU,
    SCARCE_STOCK,
    build_orders,
    check_payments,
    check_sagas,
    check_stock,
    check_wallets,
    copies,
    ids,
    order,
    seed,
    terminal,
    wait_for_seed,
)
from support.stats import check_stats, counted, minute_start
from support.topics import read_topic, setup_topics, wait_until, write_events
from support.worker import Worker, new_settings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_five_hundred_orders_end_exactly_once_and_balance(kafka: LocalKafka, tmp_path: Path, guarantee: str) -> None:
    """Duplicates but no crash: under exactly_once a read_committed reader sees no event of the app twice."""
    settings = new_settings(kafka.bootstrap, tmp_path, f"saga500-{guarantee}", processing_guarantee=guarantee)
    setup_topics(settings)
    seed_events = seed()
    write_events(settings, seed_events + seed_events[:3])  # the same event ids again: applied once
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        wait_for_seed(worker)

        orders, expected = build_orders(random.Random(500))
        duplicates = [
            OrderPlaced(**{**o.__dict__, **ids()}) for o in orders[:20]
        ]  # same order ids, new event ids: still one saga each
        # a replay of events from 7 minutes ago: they count in the windows of their own time
        replayed = [dataclasses.replace(order(f"old-{n}", RICH[n], [("SKU-A", 1, PLENTY["SKU-A"])]),
                                        occurred_at=format_time(utc_now() - timedelta(minutes=7)))
                    for n in range(len(RICH))]
        write_events(settings, orders + duplicates + orders[20:30] + replayed)
        order_topic = settings.topic("order-events")

        def all_ended() -> bool:
            return len(terminal(read_topic(kafka.bootstrap, order_topic))) >= len(orders) + len(replayed)

        wait_until(all_ended, 240, "every order to end", every=2.0)

        ended = terminal(read_topic(kafka.bootstrap, order_topic))
        assert {ended.pop(o.order_id)[0]["event_type"] for o in replayed} == {"OrderConfirmed"}
        # Guarantee 1 and 4: one outcome per order; copies of it share one event id.
        assert set(ended) == {o.order_id for o in orders}
        for order_id, bodies in ended.items():
            assert len({b["event_id"] for b in bodies}) == 1, (order_id, bodies)
        outcome = {oid: (b[0]["event_type"], b[0].get("reason")) for oid, b in ended.items()}
        for order_id, want in expected.items():
            got = outcome[order_id]
            assert (got[0] == "OrderConfirmed") if want == "CONFIRMED" else (got == ("OrderCancelled", want))

        kinds = Counter(kind if kind == "OrderConfirmed" else reason for kind, reason in outcome.values())
        assert kinds == {"OrderConfirmed": 300 + SCARCE_STOCK + 20, "OUT_OF_STOCK": 50 + 20,
                         "PAYMENT_DECLINED": 50 + 20}
        scarce = Counter(outcome[o.order_id][0] for o in orders if o.order_id.startswith("scarce-"))
        assert scarce == {"OrderConfirmed": SCARCE_STOCK, "OrderCancelled": 60 - SCARCE_STOCK}
        tight = Counter(outcome[o.order_id][0] for o in orders if o.order_id.startswith("tight-"))
        assert tight == {"OrderConfirmed": 20, "OrderCancelled": 20}

        confirmed = [o for o in orders if outcome[o.order_id][0] == "OrderConfirmed"] + replayed
        # Commits and releases are sent with the outcome; give them a moment to land.
        wait_until(lambda: all(worker.get(f"/inventory/{sku}")[1]["reserved"] == 0 for sku in [*PLENTY, SCARCE_SKU]),
                   60, "every hold to be committed or released")
        check_stock(worker, confirmed)
        check_wallets(worker, confirmed)
        check_payments(read_topic(kafka.bootstrap, settings.topic("payment-events")), orders + replayed, confirmed)
        check_sagas(worker, orders, outcome)
        windows = check_stats(worker, orders + replayed, outcome | dict.fromkeys(
            (o.order_id for o in replayed), ("OrderConfirmed", None)))
        assert counted(windows)[minute_start(replayed[0].occurred_at)]["placed"] == len(replayed)
        for topic in PUBLIC:
            assert read_topic(kafka.bootstrap, settings.topic(topic) + ".DLQ") == []
        repeated = copies(kafka.bootstrap, settings)
        print(f"\n[no crash, {guarantee}] {len(orders)} orders, {len(duplicates) + 10} sent twice:"
              f" copies by type {dict(repeated)}")
        if guarantee == "exactly_once":
            assert repeated == Counter()
    finally:
        worker.stop()
