"""exactly_once on the real broker, without crashes: every hop sees its input, each outcome once.

Faust 0.15.3 on its own puts a send in the transaction of its *destination* partition, which is
committed only when that partition's input next moves: a lone order stalls. app/transactions.py
joins the transaction of the message being processed instead.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest

from app.topic_names import INTERNAL_TOPICS
from devtools.kafka_local import LocalKafka
from models.events import FundsAdded, StockAdded
from support.scenario import Mix, build_orders, check_stock, check_wallets, ids, seed, terminal, wait_for_seed
from support.topics import end_offsets_total, read_topic, setup_topics, wait_until, write_events
from support.worker import Worker, new_settings

pytestmark = pytest.mark.integration

LOAD = Mix(ok=60, out_of_stock=10, broke=10, scarce=50, tight=30)
COMMITTED = "read_committed"


def test_orders_complete_under_transactions_with_each_outcome_committed_once(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, "eos", processing_guarantee="exactly_once")
    setup_topics(settings)
    write_events(settings, [*seed(), StockAdded(**ids(), sku="SKU-WEB", quantity=5),
                            FundsAdded(**ids(), customer_id="web-cust", amount=Decimal("5.00"))])
    worker = Worker(settings, tmp_path / "worker.log").start()
    order_topic = settings.topic("order-events")
    try:
        wait_for_seed(worker, timeout=120)
        # One order on an idle system: no other traffic will close a transaction for it.
        status, placed = worker.post("/orders", b'{"customer_id":"web-cust","items":[{"sku":"SKU-WEB",'
                                     b'"quantity":2,"unit_price":"1.50"}]}')
        assert status == 202
        assert worker.get(f"/orders/{placed['order_id']}?wait=30")[1]["status"] == "COMPLETED"

        orders, expected = build_orders(random.Random(160), LOAD)
        write_events(settings, orders)
        everything = {o.order_id for o in orders} | {placed["order_id"]}

        wait_until(lambda: set(terminal(read_topic(kafka.bootstrap, order_topic, COMMITTED))) >= everything,
                   180, "every order to end, as a read_committed reader sees it", every=2.0)
        ended = terminal(read_topic(kafka.bootstrap, order_topic, COMMITTED))
        assert {oid: len(b) for oid, b in ended.items() if len(b) != 1} == {}
        outcome = {oid: (b[0]["event_type"], b[0].get("reason")) for oid, b in ended.items()}
        for order_id, want in expected.items():
            kind, reason = outcome[order_id]
            assert kind == "OrderConfirmed" if want == "CONFIRMED" else (kind, reason) == ("OrderCancelled", want)
        assert outcome[placed["order_id"]] == ("OrderConfirmed", None)

        wait_until(lambda: all(worker.get(f"/inventory/{s}")[1]["reserved"] == 0
                               for s in ("SKU-A", "SKU-B", "SKU-C", "SKU-SCARCE")), 60, "holds to settle")
        confirmed = [o for o in orders if outcome[o.order_id][0] == "OrderConfirmed"]
        check_stock(worker, confirmed)
        check_wallets(worker, confirmed)
        assert worker.get("/wallets/web-cust")[1]["balance"] == "2.00"
        assert worker.get("/inventory/SKU-WEB")[1] == {"sku": "SKU-WEB", "available": 3, "reserved": 0}
        payments = [r.body["order_id"] for r in read_topic(kafka.bootstrap, settings.topic("payment-events"),
                                                           COMMITTED) if r.body.get("event_type") == "PaymentProcessed"]
        assert sorted(payments) == sorted({o.order_id for o in confirmed} | {placed["order_id"]})
        assert len(confirmed) == LOAD.expected_kinds()["OrderConfirmed"]
        # the one worker owns every partition, so every command and reply was handled in place
        assert end_offsets_total(kafka.bootstrap, [settings.internal_topic(name) for name in INTERNAL_TOPICS]) == 0
    finally:
        worker.stop()
