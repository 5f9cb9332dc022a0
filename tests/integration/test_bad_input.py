"""Input no handler can use never stops an agent: odd keys, oversized orders, the largest allowed order."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from devtools.kafka_local import LocalKafka
from models import commands
from models.commands import ChargeWallet, ReserveStock, StockReserved
from models.events import MAX_ORDER_LINES, FundsAdded, OrderLine, OrderPlaced, StockAdded, UserRegistered
from support.scenario import ids
from support.topics import Record, read_topic, setup_topics, wait_until, write_events, write_raw
from support.worker import Worker, new_settings

pytestmark = pytest.mark.integration


def _order(order_id: str, lines: list[tuple[str, int]], customer_id: str = "big-cust") -> OrderPlaced:
    items = tuple(OrderLine(sku=sku, quantity=quantity, unit_price=Decimal("1.00")) for sku, quantity in lines)
    return OrderPlaced(**ids(), order_id=order_id, customer_id=customer_id, items=items,
                       total_amount=Decimal(sum(quantity for _, quantity in lines)))


def _dead_letters(bootstrap: str, topic: str, count: int) -> list[Record]:
    def arrived() -> list[Record]:
        letters = read_topic(bootstrap, topic + ".DLQ")
        return letters if len(letters) >= count else []

    return wait_until(arrived, 60, f"{count} dead letters of {topic}")


def test_records_with_no_key_or_an_odd_key_never_stop_an_agent(kafka: LocalKafka, tmp_path: Path) -> None:
    """Public topics go by the body's aggregate id (the contract lets the body win); on internal topics the
    key picks the owner's partition, so a record with no key, a non-UTF-8 key or another key is dead-lettered."""
    settings = new_settings(kafka.bootstrap, tmp_path, "keys")
    setup_topics(settings)
    write_events(settings, [StockAdded(**ids(), sku="SKU-K", quantity=100),
                            FundsAdded(**ids(), customer_id="big-cust", amount=Decimal("100.00"))])
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: worker.get("/inventory/SKU-K")[0] == 200, 60, "seed data")
        public = settings.topic("order-events")
        write_raw(kafka.bootstrap, public, [(None, _order("no-key", [("SKU-K", 1)]).encode()),
                                            (b"\xff\xfe\xfd", _order("odd-key", [("SKU-K", 1)]).encode())])
        write_raw(kafka.bootstrap, settings.topic("user-events"), [
            (None, UserRegistered(**ids(), customer_id="k-user", name="Kay", email="kay@example.com").encode())])
        internal = {  # topic: (the body's key, the value)
            commands.SAGA: ("ghost", StockReserved(order_id="ghost", sku="SKU-K", quantity=1).encode()),
            commands.STOCK: ("SKU-K", ReserveStock(order_id="ghost", sku="SKU-K", quantity=5).encode()),
            commands.WALLET: ("big-cust", ChargeWallet(order_id="ghost", customer_id="big-cust",
                                                       amount=Decimal("5.00")).encode()),
            commands.CUSTOMER: ("ghost", UserRegistered(**ids(), customer_id="ghost", name="G",
                                                        email="g@example.com").encode()),
        }
        for topic, (_, value) in internal.items():
            write_raw(kafka.bootstrap, settings.internal_topic(topic), [(None, value), (b"\xff", value),
                                                                         (b"someone-else", value)])
        write_raw(kafka.bootstrap, public, [(b"after", _order("after", [("SKU-K", 1)]).encode())])

        for order_id in ("no-key", "odd-key", "after"):
            assert worker.get(f"/orders/{order_id}?wait=30")[1]["status"] == "COMPLETED", order_id
        assert worker.get("/customers/k-user")[1]["name"] == "Kay"
        for topic, (key, _) in internal.items():
            letters = _dead_letters(kafka.bootstrap, settings.internal_topic(topic), 3)
            reasons = sorted(letter.headers["failure.reason"].decode() for letter in letters)
            assert reasons == sorted(["record has no key", "key is not UTF-8",
                                      f"key 'someone-else' is not the body's {key!r}"]), topic
        stock = {"sku": "SKU-K", "available": 97, "reserved": 0}
        wait_until(lambda: worker.get("/inventory/SKU-K")[1] == stock, 30, "the holds to be committed")
        assert worker.get("/wallets/big-cust")[1]["balance"] == "97.00"
        assert worker.get("/customers/ghost")[0] == 404
    finally:
        worker.stop()


def test_an_order_too_large_is_dead_lettered_and_the_largest_allowed_holds_up_nothing(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    """15,000 lines (934 KB, under Kafka's 1 MB) once blocked the saga agent for minutes."""
    settings = new_settings(kafka.bootstrap, tmp_path, "big")
    setup_topics(settings)
    skus = [f"SKU-{n:03d}" for n in range(MAX_ORDER_LINES)]
    write_events(settings, [*(StockAdded(**ids(), sku=sku, quantity=10) for sku in skus),
                            FundsAdded(**ids(), customer_id="big-cust", amount=Decimal("10000.00"))])
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: worker.get(f"/inventory/{skus[-1]}")[0] == 200, 60, "seed data")
        huge = _order("huge", [(f"SKU-LONG-NAME-{n:05d}", 1) for n in range(15_000)])
        assert len(huge.encode()) > 900_000
        largest = _order("largest", [(sku, 2) for sku in skus])
        normal = _order("normal", [(skus[0], 1)])
        written = time.monotonic()
        write_raw(kafka.bootstrap, settings.topic("order-events"),
                  [(b"huge", huge.encode()), (b"largest", largest.encode()), (b"normal", normal.encode())])

        assert worker.get("/orders/normal?wait=60")[1]["status"] == "COMPLETED"
        print(f"the order behind the huge and the largest one ended {time.monotonic() - written:.1f}s after")
        assert worker.get("/orders/largest?wait=60")[1]["status"] == "COMPLETED"
        assert worker.get("/orders/huge")[0] == 404
        (letter,) = _dead_letters(kafka.bootstrap, settings.topic("order-events"), 1)
        assert (letter.key, letter.value) == (b"huge", huge.encode())
        assert letter.headers["failure.reason"] == (
            f"invalid OrderPlaced: an order has at most {MAX_ORDER_LINES} lines, this one has 15000").encode()
        stock = {"sku": skus[0], "available": 7, "reserved": 0}
        wait_until(lambda: worker.get(f"/inventory/{skus[0]}")[1] == stock, 30, "the holds to be committed")

        def confirmed() -> list[bytes | None]:
            return sorted(r.key for r in read_topic(kafka.bootstrap, settings.topic("order-events"))
                          if orjson.loads(r.value or b"{}").get("event_type") == "OrderConfirmed")

        wait_until(lambda: confirmed() == [b"largest", b"normal"], 30, "both orders confirmed, the huge one not")
    finally:
        worker.stop()
