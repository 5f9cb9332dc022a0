"""Bad input mixed into good: each bad message lands in its topic's .DLQ byte for byte, the rest completes."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from devtools.kafka_local import LocalKafka
from models.events import (
    FundsAdded,
    OrderLine,
    OrderPlaced,
    StockAdded,
    UserRegistered,
    format_time,
    parse_time,
    utc_now,
)
from support.stats import stats, totals
from support.topics import Record, read_topic, setup_topics, wait_until, write_events, write_raw
from support.worker import Worker, new_settings

pytestmark = pytest.mark.integration


def _ids() -> dict[str, str]:
    return {"event_id": str(uuid.uuid4()), "occurred_at": format_time(utc_now())}


def _order_body(order_id: str, **changes: object) -> dict:
    body = OrderPlaced(**_ids(), order_id=order_id, customer_id="dlq-cust",
                       items=(OrderLine(sku="SKU-DLQ", quantity=1, unit_price=Decimal("1.00")),),
                       total_amount=Decimal("1.00")).body()
    body.update(changes)
    return body


def _bad_messages() -> dict[str, list[tuple[bytes | None, bytes | None]]]:
    """Per public topic, the malformed messages to write (key, value)."""
    no_customer = _order_body("bad-missing")
    del no_customer["customer_id"]
    return {
        "order-events": [
            (b"bad-json", b"{not json"),
            (b"bad-array", b"[1, 2, 3]"),
            (b"bad-type", orjson.dumps(_order_body("bad-type", items=[{"sku": "SKU-DLQ", "quantity": "1",
                                                                       "unit_price": "1.00"}]))),
            (b"bad-missing", orjson.dumps(no_customer)),
            (b"bad-negative", orjson.dumps(_order_body("bad-negative", items=[
                {"sku": "SKU-DLQ", "quantity": -1, "unit_price": "1.00"}], total_amount="-1.00"))),
            (b"bad-unknown", orjson.dumps(_order_body("bad-unknown", event_type="OrderExploded"))),
            (b"bad-version", orjson.dumps(_order_body("bad-version", version=2))),
            (b"bad-null", None),
            (b"bad-topic", orjson.dumps({**_ids(), "event_type": "StockAdded", "version": 1, "sku": "X",
                                          "quantity": 1})),
            ("bad-ünïcødé-キー".encode(), "{\"event_type\": \"Zahlung ✓\", \"ß\": 1}".encode()),
        ],
        "inventory-events": [
            (b"SKU-HUGE", orjson.dumps({**_ids(), "event_type": "StockAdded", "version": 1, "sku": "S" * 999_000,
                                        "quantity": 1})),
        ],
        "payment-events": [
            (b"dlq-cust", orjson.dumps({**_ids(), "event_type": "FundsAdded", "version": 1,
                                        "customer_id": "dlq-cust", "amount": 10.5})),
        ],
        "user-events": [
            (b"u-bad", orjson.dumps({**_ids(), "event_type": "UserRegistered", "version": 1,
                                     "customer_id": "u-bad", "name": "No Email", "email": 42})),
        ],
    }


def test_bad_input_goes_to_dead_letters_and_good_orders_complete(kafka: LocalKafka, tmp_path: Path) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, "dlq")
    setup_topics(settings)
    write_events(settings, [
        StockAdded(**_ids(), sku="SKU-DLQ", quantity=1000),
        FundsAdded(**_ids(), customer_id="dlq-cust", amount=Decimal("1000.00")),
        UserRegistered(**_ids(), customer_id="dlq-cust", name="Zoë 李 Ñandú", email="zoe@example.com"),
    ])
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: worker.get("/wallets/dlq-cust")[0] == 200, 60, "seed data")
        good = [f"good-{n}" for n in range(40)]
        expected = _bad_messages()
        bad = {topic: list(messages) for topic, messages in expected.items()}
        for index, order_id in enumerate(good):
            write_raw(kafka.bootstrap, settings.topic("order-events"),
                      [(order_id.encode(), orjson.dumps(_order_body(order_id)))])
            if index % 4 == 0:  # interleave the bad ones with the good
                for topic, messages in bad.items():
                    if messages:
                        write_raw(kafka.bootstrap, settings.topic(topic), [messages.pop(0)])
        for topic, messages in bad.items():
            write_raw(kafka.bootstrap, settings.topic(topic), messages)

        for order_id in good:
            assert worker.get(f"/orders/{order_id}?wait=30")[1]["status"] == "COMPLETED"
        for topic, messages in expected.items():
            name = settings.topic(topic)
            def arrived(dlq: str = name + ".DLQ", count: int = len(messages)) -> list[Record]:
                letters = read_topic(kafka.bootstrap, dlq)
                return letters if len(letters) >= count else []

            letters = wait_until(arrived, 60, f"dead letters of {topic}")
            assert sorted((r.key, r.value or b"") for r in letters) == sorted((k, v or b"") for k, v in messages)
            assert sum(r.value is None for r in letters) == sum(v is None for _, v in messages)
            originals = {(r.partition, r.offset): r for r in read_topic(kafka.bootstrap, name)}
            for letter in letters:
                headers = letter.headers
                assert headers["original.topic"] == name.encode()
                source = originals[(int(headers["original.partition"]), int(headers["original.offset"]))]
                assert (source.key, source.value) == (letter.key, letter.value)
                assert headers["failure.class"] == b"BadMessage"
                assert headers["failure.reason"]
                assert parse_time(headers["failure.timestamp"].decode()) <= utc_now()
        # each dead letter counted once, under its topic, in the window of the record's timestamp
        assert totals(stats(worker))["dead_letters"] == {settings.topic(t): len(m) for t, m in expected.items()}
        assert worker.get("/customers/dlq-cust")[1]["name"] == "Zoë 李 Ñandú"
        assert worker.get("/customers/u-bad")[0] == 404
        assert worker.get("/wallets/dlq-cust")[1]["balance"] == "960.00"
        # a completed saga's commit of its hold reaches the stock agent with the saga's transaction
        wait_until(lambda: worker.get("/inventory/SKU-DLQ")[1]["reserved"] == 0, 30, "holds to be committed")
        assert worker.get("/inventory/SKU-DLQ")[1] == {"sku": "SKU-DLQ", "available": 960, "reserved": 0}
    finally:
        worker.stop()
