"""500 orders with a known mix of outcomes through a real worker on a real broker.

Outcomes are exact whatever the processing order: plenty of stock or none, rich or broke
customers, and two contended resources (a scarce sku, a tight wallet) whose winners vary
but whose counts do not.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from app.kafka_local import LocalKafka
from models.events import (
    Event,
    FundsAdded,
    OrderLine,
    OrderPlaced,
    StockAdded,
    UserRegistered,
    format_time,
    utc_now,
)
from support.topics import Record, read_topic, setup_topics, wait_until, write_events
from support.worker import Worker, new_settings

pytestmark = pytest.mark.integration

PLENTY = {"SKU-A": Decimal("1.00"), "SKU-B": Decimal("2.50"), "SKU-C": Decimal("4.00")}
EMPTY_SKU, SCARCE_SKU = "SKU-NONE", "SKU-SCARCE"
SCARCE_STOCK = 40
RICH = [f"rich-{n}" for n in range(10)]
BROKE = [f"broke-{n}" for n in range(5)]
TIGHT = "tight"
TIGHT_FUNDS, TIGHT_PRICE = Decimal("200.00"), Decimal("10.00")


def _ids() -> dict[str, str]:
    return {"event_id": str(uuid.uuid4()), "occurred_at": format_time(utc_now())}


def _order(order_id: str, customer: str, lines: list[tuple[str, int, Decimal]]) -> OrderPlaced:
    items = tuple(OrderLine(sku=s, quantity=q, unit_price=p) for s, q, p in lines)
    total = sum((line.quantity * line.unit_price for line in items), Decimal("0.00"))
    return OrderPlaced(**_ids(), order_id=order_id, customer_id=customer, items=items, total_amount=total)


def _seed() -> list[Event]:
    events: list[Event] = []
    for customer in [*RICH, *BROKE, TIGHT]:
        events.append(UserRegistered(**_ids(), customer_id=customer, name=f"Näme {customer}", email=f"{customer}@x.io"))
    events += [FundsAdded(**_ids(), customer_id=c, amount=Decimal("10000.00")) for c in RICH]
    events.append(FundsAdded(**_ids(), customer_id=TIGHT, amount=TIGHT_FUNDS))
    events += [StockAdded(**_ids(), sku=sku, quantity=100_000) for sku in PLENTY]
    events.append(StockAdded(**_ids(), sku=SCARCE_SKU, quantity=SCARCE_STOCK))
    return events


def _orders(rng: random.Random) -> tuple[list[OrderPlaced], dict[str, str]]:
    """500 orders and, where it is fixed, the outcome each must have."""
    orders: list[OrderPlaced] = []
    expected: dict[str, str] = {}

    def plenty_lines(n: int) -> list[tuple[str, int, Decimal]]:
        return [(sku, rng.randint(1, 5), PLENTY[sku]) for sku in rng.sample(sorted(PLENTY), n)]

    for n in range(300):
        orders.append(_order(f"ok-{n}", rng.choice(RICH), plenty_lines(rng.randint(1, 3))))
        expected[orders[-1].order_id] = "CONFIRMED"
    for n in range(50):
        lines = plenty_lines(rng.randint(1, 2)) + [(EMPTY_SKU, 1, Decimal("9.99"))]
        rng.shuffle(lines)
        orders.append(_order(f"oos-{n}", rng.choice(RICH), lines))
        expected[orders[-1].order_id] = "OUT_OF_STOCK"
    for n in range(50):
        orders.append(_order(f"broke-{n}", rng.choice(BROKE), plenty_lines(rng.randint(1, 3))))
        expected[orders[-1].order_id] = "PAYMENT_DECLINED"
    orders += [_order(f"scarce-{n}", rng.choice(RICH), [(SCARCE_SKU, 1, Decimal("3.00"))]) for n in range(60)]
    orders += [_order(f"tight-{n}", TIGHT, [("SKU-A", 10, TIGHT_PRICE / 10)]) for n in range(40)]
    rng.shuffle(orders)
    return orders, expected


def _terminal(records: list[Record]) -> dict[str, list[dict]]:
    by_order: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        body = record.body
        if body.get("event_type") in ("OrderConfirmed", "OrderCancelled"):
            by_order[body["order_id"]].append(body)
    return by_order


def test_five_hundred_orders_end_exactly_once_and_balance(kafka: LocalKafka, tmp_path: Path) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, "saga500")
    setup_topics(settings)
    seed = _seed()
    write_events(settings, seed + seed[:3])  # the same event ids again: applied once
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: worker.get(f"/inventory/{SCARCE_SKU}")[0] == 200
                   and worker.get(f"/wallets/{TIGHT}")[0] == 200
                   and all(worker.get(f"/wallets/{c}")[0] == 200 for c in RICH), 60, "seed data")

        orders, expected = _orders(random.Random(500))
        duplicates = [
            OrderPlaced(**{**o.__dict__, **_ids()}) for o in orders[:20]
        ]  # same order ids, new event ids: still one saga each
        write_events(settings, orders + duplicates + orders[20:30])
        order_topic = settings.topic("order-events")

        def all_ended() -> bool:
            return len(_terminal(read_topic(kafka.bootstrap, order_topic))) >= len(orders)

        wait_until(all_ended, 240, "every order to end", every=2.0)

        ended = _terminal(read_topic(kafka.bootstrap, order_topic))
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

        confirmed = [o for o in orders if outcome[o.order_id][0] == "OrderConfirmed"]
        # Commits and releases are sent with the outcome; give them a moment to land.
        wait_until(lambda: all(worker.get(f"/inventory/{sku}")[1]["reserved"] == 0 for sku in [*PLENTY, SCARCE_SKU]),
                   60, "every hold to be committed or released")
        _check_stock(worker, confirmed)
        _check_wallets(worker, confirmed)
        _check_payments(read_topic(kafka.bootstrap, settings.topic("payment-events")), orders, confirmed)
        _check_sagas(worker, orders, outcome)
        for topic in ("order-events", "inventory-events", "payment-events", "user-events", "saga-events"):
            assert read_topic(kafka.bootstrap, settings.topic(topic) + ".DLQ") == []
    finally:
        worker.stop()


def _check_stock(worker: Worker, confirmed: list[OrderPlaced]) -> None:
    """Guarantee 2: added minus confirmed equals available, nothing left held."""
    sold: Counter[str] = Counter()
    for order in confirmed:
        for line in order.items:
            sold[line.sku] += line.quantity
    added = {**{sku: 100_000 for sku in PLENTY}, SCARCE_SKU: SCARCE_STOCK}
    for sku, quantity in added.items():
        status, view = worker.get(f"/inventory/{sku}")
        assert status == 200
        assert view == {"sku": sku, "available": quantity - sold[sku], "reserved": 0}
    assert worker.get(f"/inventory/{EMPTY_SKU}")[1]["available"] == 0


def _check_wallets(worker: Worker, confirmed: list[OrderPlaced]) -> None:
    """Guarantee 3: funds minus confirmed totals equals the balance, never below zero."""
    spent: Counter[str] = Counter()
    for order in confirmed:
        spent[order.customer_id] += order.total_amount
    funds = {**{c: Decimal("10000.00") for c in RICH}, TIGHT: TIGHT_FUNDS}
    for customer, amount in funds.items():
        status, view = worker.get(f"/wallets/{customer}")
        assert status == 200
        assert Decimal(view["balance"]) == amount - spent[customer] >= 0
    assert worker.get(f"/wallets/{TIGHT}")[1]["balance"] == "0.00"


def _check_payments(records: list[Record], orders: list[OrderPlaced], confirmed: list[OrderPlaced]) -> None:
    """Each confirmed order charged once; cancelled orders never charged (or refunded in full)."""
    charged: dict[str, set[str]] = defaultdict(set)
    refunded: dict[str, set[str]] = defaultdict(set)
    for record in records:
        body = record.body
        if body.get("event_type") == "PaymentProcessed":
            charged[body["order_id"]].add(body["event_id"])
            assert record.headers["eventType"] == b"PaymentProcessed"
            assert record.headers["aggregateId"] == body["order_id"].encode()
        if body.get("event_type") == "PaymentRefunded":
            refunded[body["order_id"]].add(body["event_id"])
    confirmed_ids = {o.order_id for o in confirmed}
    assert {oid for oid, ids in charged.items() if len(ids) == 1} == set(charged)
    assert set(charged) - set(refunded) == confirmed_ids
    assert not (set(refunded) & confirmed_ids)


def _check_sagas(worker: Worker, orders: list[OrderPlaced], outcome: dict[str, tuple[str, str | None]]) -> None:
    """The saga view agrees with the events, for a sample of orders."""
    for order in orders[:: len(orders) // 25]:
        status, view = worker.get(f"/orders/{order.order_id}")
        assert status == 200
        kind, reason = outcome[order.order_id]
        assert view["status"] == ("COMPLETED" if kind == "OrderConfirmed" else "FAILED")
        assert view["reason"] == reason
        assert set(view) >= {"order_id", "saga_id", "status", "step", "steps", "reason", "started_at", "updated_at"}
