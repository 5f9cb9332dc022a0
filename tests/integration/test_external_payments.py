"""External payment mode on a real broker: a test gateway answers, declines, stays silent or answers late."""

from __future__ import annotations

import shutil
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from devtools.kafka_local import LocalKafka
from models.events import OrderLine, OrderPlaced, PaymentFailed, PaymentProcessed, StockAdded, format_time, utc_now
from support.topics import read_topic, setup_topics, wait_until, write_events
from support.worker import Worker, new_settings

pytestmark = pytest.mark.integration

SKU = "SKU-EXT"


def _ids() -> dict[str, str]:
    return {"event_id": str(uuid.uuid4()), "occurred_at": format_time(utc_now())}


def _order(order_id: str) -> OrderPlaced:
    line = OrderLine(sku=SKU, quantity=2, unit_price=Decimal("5.00"))
    return OrderPlaced(
        **_ids(), order_id=order_id, customer_id="cust-ext", items=(line,), total_amount=Decimal("10.00")
    )


def _bodies(kafka: LocalKafka, topic: str, event_type: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for record in read_topic(kafka.bootstrap, topic):
        if record.body.get("event_type") == event_type:
            found.setdefault(record.body["order_id"], []).append(record.body)
    return found


def test_gateway_answers_declines_stays_silent_and_answers_late(kafka: LocalKafka, tmp_path: Path) -> None:
    # the timeout outlasts a restart with the tables wiped (it took up to 17 s here under exactly_once),
    # so only the silent orders time out
    settings = new_settings(kafka.bootstrap, tmp_path, "extpay", payment_mode="external",
                            saga_timeout_s=45.0, timeout_check_interval_s=1.0)
    setup_topics(settings)
    write_events(settings, [StockAdded(**_ids(), sku=SKU, quantity=100)])
    worker = Worker(settings, tmp_path / "worker.log").start()
    payments = settings.topic("payment-events")
    try:
        wait_until(lambda: worker.get(f"/inventory/{SKU}")[0] == 200, 60, "stock")
        write_events(settings, [_order(o) for o in ("paid", "declined", "silent", "late")])
        requested = wait_until(lambda: len(_bodies(kafka, payments, "PaymentRequested")) == 4
                               and _bodies(kafka, payments, "PaymentRequested"), 60, "four payment requests")
        assert {oid: b[0]["amount"] for oid, b in requested.items()} == {o: "10.00" for o in requested}
        assert worker.get(f"/inventory/{SKU}")[1] == {"sku": SKU, "available": 92, "reserved": 8}

        # The deadlines must survive the worker: restart it with its tables rebuilt from changelogs.
        worker.stop()
        shutil.rmtree(settings.data_dir)
        worker = Worker(settings, tmp_path / "worker.log").start()

        answer = {"order_id": "", "customer_id": "cust-ext", "amount": Decimal("10.00")}
        write_events(settings, [
            PaymentProcessed(**_ids(), **{**answer, "order_id": "paid"}),
            PaymentFailed(**_ids(), **{**answer, "order_id": "declined"}, reason="CARD_DECLINED"),
        ])
        done = {o: worker.get(f"/orders/{o}?wait=60", timeout=90)[1] for o in ("paid", "declined", "silent", "late")}
        assert (done["paid"]["status"], done["paid"]["reason"]) == ("COMPLETED", None)
        assert (done["declined"]["status"], done["declined"]["reason"]) == ("FAILED", "PAYMENT_DECLINED")
        for silent in ("silent", "late"):
            assert (done[silent]["status"], done[silent]["reason"]) == ("TIMED_OUT", "TIMEOUT")
            assert done[silent]["steps"]["PAYMENT_PROCESSING"] == "TIMED_OUT"

        # A payment that succeeds after the saga gave up is refunded.
        write_events(settings, [PaymentProcessed(**_ids(), **{**answer, "order_id": "late"})])
        refunds = wait_until(lambda: _bodies(kafka, payments, "PaymentRefunded"), 30, "the late payment's refund")
        assert set(refunds) == {"late"} and refunds["late"][0]["amount"] == "10.00"

        cancelled = _bodies(kafka, settings.topic("order-events"), "OrderCancelled")
        assert {o: b[0]["reason"] for o, b in cancelled.items()} == {
            "declined": "PAYMENT_DECLINED", "silent": "TIMEOUT", "late": "TIMEOUT"}
        assert set(_bodies(kafka, settings.topic("order-events"), "OrderConfirmed")) == {"paid"}
        timed_out = _bodies(kafka, settings.topic("saga-events"), "SagaTimedOut")
        assert set(timed_out) == {"silent", "late"}
        notified = {r.body["order_id"] for r in read_topic(kafka.bootstrap, settings.topic("user-events"))
                    if r.body.get("event_type") == "CustomerNotified"}
        assert notified == {"declined", "silent", "late"}
        wait_until(lambda: worker.get(f"/inventory/{SKU}")[1]["reserved"] == 0, 30, "holds to be released")
        assert worker.get(f"/inventory/{SKU}")[1] == {"sku": SKU, "available": 98, "reserved": 0}
    finally:
        worker.stop()
