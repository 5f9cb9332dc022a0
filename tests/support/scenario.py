"""Seed data, a mix of orders with known outcomes, and the checks that the outcomes balance.

Outcomes are exact whatever the processing order: plenty of stock or none, rich or broke
customers, and two contended resources (a scarce sku, a tight wallet) whose winners vary
but whose counts do not. Shared by the scenario and the fault tests.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from config.settings import Settings
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
from support.topics import Record, read_topic, wait_until
from support.worker import Worker

PLENTY = {"SKU-A": Decimal("1.00"), "SKU-B": Decimal("2.50"), "SKU-C": Decimal("4.00")}
PLENTY_STOCK = 100_000
EMPTY_SKU, SCARCE_SKU = "SKU-NONE", "SKU-SCARCE"
SCARCE_STOCK = 40
STOCKED_SKUS = [*PLENTY, SCARCE_SKU]
ALL_SKUS = [*STOCKED_SKUS, EMPTY_SKU]
RICH = [f"rich-{n}" for n in range(10)]
RICH_FUNDS = Decimal("10000.00")
BROKE = [f"broke-{n}" for n in range(5)]
TIGHT = "tight"
TIGHT_FUNDS, TIGHT_PRICE = Decimal("200.00"), Decimal("10.00")
CUSTOMERS = [*RICH, *BROKE, TIGHT]
FUNDED = [*RICH, TIGHT]

#: Outcome of an order as counted: ``OrderConfirmed`` or the cancellation reason.
Outcome = tuple[str, str | None]


def ids() -> dict[str, str]:
    """A fresh event id and timestamp."""
    return {"event_id": str(uuid.uuid4()), "occurred_at": format_time(utc_now())}


def order(order_id: str, customer: str, lines: list[tuple[str, int, Decimal]]) -> OrderPlaced:
    """An ``OrderPlaced`` whose total adds up."""
    items = tuple(OrderLine(sku=s, quantity=q, unit_price=p) for s, q, p in lines)
    total = sum((line.quantity * line.unit_price for line in items), Decimal("0.00"))
    return OrderPlaced(**ids(), order_id=order_id, customer_id=customer, items=items, total_amount=total)


def seed() -> list[Event]:
    """Customers, their funds and the stock every order mix needs."""
    events: list[Event] = []
    for customer in CUSTOMERS:
        events.append(UserRegistered(**ids(), customer_id=customer, name=f"Näme {customer}", email=f"{customer}@x.io"))
    events += [FundsAdded(**ids(), customer_id=c, amount=RICH_FUNDS) for c in RICH]
    events.append(FundsAdded(**ids(), customer_id=TIGHT, amount=TIGHT_FUNDS))
    events += [StockAdded(**ids(), sku=sku, quantity=PLENTY_STOCK) for sku in PLENTY]
    events.append(StockAdded(**ids(), sku=SCARCE_SKU, quantity=SCARCE_STOCK))
    return events


def wait_for_seed(worker: Worker, timeout: float = 60) -> None:
    """Until the seed's stock and wallets are visible through ``worker``."""
    wait_until(lambda: all(worker.get(f"/inventory/{sku}")[0] == 200 for sku in (*PLENTY, SCARCE_SKU))
               and all(worker.get(f"/wallets/{c}")[0] == 200 for c in (*RICH, TIGHT)), timeout, "seed data")


@dataclass(frozen=True)
class Mix:
    """How many orders of each kind; the scenario's 500 by default."""

    ok: int = 300
    out_of_stock: int = 50
    broke: int = 50
    scarce: int = 60
    tight: int = 40

    @property
    def total(self) -> int:
        """Number of orders."""
        return self.ok + self.out_of_stock + self.broke + self.scarce + self.tight

    @property
    def scarce_sold(self) -> int:
        """Scarce orders that win a unit; the rest are out of stock."""
        return min(self.scarce, SCARCE_STOCK)

    @property
    def tight_paid(self) -> int:
        """Tight orders the wallet covers; the rest are declined."""
        return min(self.tight, int(TIGHT_FUNDS // TIGHT_PRICE))

    def expected_kinds(self) -> Counter[str]:
        """Outcome counts the mix must end with."""
        return Counter({
            "OrderConfirmed": self.ok + self.scarce_sold + self.tight_paid,
            "OUT_OF_STOCK": self.out_of_stock + self.scarce - self.scarce_sold,
            "PAYMENT_DECLINED": self.broke + self.tight - self.tight_paid,
        })


def build_orders(rng: random.Random, mix: Mix = Mix()) -> tuple[list[OrderPlaced], dict[str, str]]:
    """The mix's orders, shuffled, and, where it is fixed, the outcome each must have."""
    orders: list[OrderPlaced] = []
    expected: dict[str, str] = {}

    def plenty_lines(n: int) -> list[tuple[str, int, Decimal]]:
        return [(sku, rng.randint(1, 5), PLENTY[sku]) for sku in rng.sample(sorted(PLENTY), n)]

    for n in range(mix.ok):
        orders.append(order(f"ok-{n}", rng.choice(RICH), plenty_lines(rng.randint(1, 3))))
        expected[orders[-1].order_id] = "CONFIRMED"
    for n in range(mix.out_of_stock):
        lines = plenty_lines(rng.randint(1, 2)) + [(EMPTY_SKU, 1, Decimal("9.99"))]
        rng.shuffle(lines)
        orders.append(order(f"oos-{n}", rng.choice(RICH), lines))
        expected[orders[-1].order_id] = "OUT_OF_STOCK"
    for n in range(mix.broke):
        orders.append(order(f"broke-{n}", rng.choice(BROKE), plenty_lines(rng.randint(1, 3))))
        expected[orders[-1].order_id] = "PAYMENT_DECLINED"
    orders += [order(f"scarce-{n}", rng.choice(RICH), [(SCARCE_SKU, 1, Decimal("3.00"))]) for n in range(mix.scarce)]
    orders += [order(f"tight-{n}", TIGHT, [("SKU-A", 10, TIGHT_PRICE / 10)]) for n in range(mix.tight)]
    rng.shuffle(orders)
    return orders, expected


def terminal(records: list[Record]) -> dict[str, list[dict[str, Any]]]:
    """Every ``OrderConfirmed`` / ``OrderCancelled`` body, by order id, copies included."""
    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        body = record.body
        if body.get("event_type") in ("OrderConfirmed", "OrderCancelled"):
            by_order[body["order_id"]].append(body)
    return by_order


#: the public topics, and the event types outside producers write there (everything else is the app's)
PUBLIC = ("order-events", "inventory-events", "payment-events", "user-events", "saga-events")
INPUTS = ("OrderPlaced", "StockAdded", "FundsAdded", "UserRegistered")


def copies(bootstrap: str, settings: Settings, isolation: str = "read_committed") -> Counter[str]:
    """Per event type, how many of the application's public events repeat an event id (re-sent copies)."""
    seen = Counter((r.body.get("event_type"), r.body.get("event_id"))
                   for topic in PUBLIC for r in read_topic(bootstrap, settings.topic(topic), isolation)
                   if r.body.get("event_type") not in INPUTS)
    repeated: Counter[str] = Counter()
    for (kind, _), n in seen.items():
        repeated[str(kind)] += n - 1
    return +repeated


def count_ended(bootstrap: str, order_topic: str, isolation: str = "read_committed") -> int:
    """How many orders have an outcome on the order topic now, as a read_committed consumer sees it."""
    return len(terminal(read_topic(bootstrap, order_topic, isolation)))


def check_stock(worker: Worker, confirmed: list[OrderPlaced]) -> None:
    """Guarantee 2: added minus confirmed equals available, nothing left held."""
    sold: Counter[str] = Counter()
    for placed in confirmed:
        for line in placed.items:
            sold[line.sku] += line.quantity
    added = {**{sku: PLENTY_STOCK for sku in PLENTY}, SCARCE_SKU: SCARCE_STOCK}
    for sku, quantity in added.items():
        status, view = worker.get(f"/inventory/{sku}")
        assert status == 200
        assert view == {"sku": sku, "available": quantity - sold[sku], "reserved": 0}
    assert worker.get(f"/inventory/{EMPTY_SKU}")[1]["available"] == 0


def check_wallets(worker: Worker, confirmed: list[OrderPlaced]) -> None:
    """Guarantee 3: funds minus confirmed totals equals the balance, never below zero."""
    spent: Counter[str] = Counter()
    for placed in confirmed:
        spent[placed.customer_id] += placed.total_amount
    funds = {**{c: RICH_FUNDS for c in RICH}, TIGHT: TIGHT_FUNDS}
    for customer, amount in funds.items():
        status, view = worker.get(f"/wallets/{customer}")
        assert status == 200
        assert Decimal(view["balance"]) == amount - spent[customer] >= 0
    assert worker.get(f"/wallets/{TIGHT}")[1]["balance"] == "0.00"


def check_payments(records: list[Record], orders: list[OrderPlaced], confirmed: list[OrderPlaced]) -> None:
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


def check_sagas(worker: Worker, orders: list[OrderPlaced], outcome: dict[str, Outcome]) -> None:
    """The saga view agrees with the events, for a sample of orders."""
    for placed in orders[:: len(orders) // 25]:
        status, view = worker.get(f"/orders/{placed.order_id}")
        assert status == 200
        kind, reason = outcome[placed.order_id]
        assert view["status"] == ("COMPLETED" if kind == "OrderConfirmed" else "FAILED")
        assert view["reason"] == reason
        assert set(view) >= {"order_id", "saga_id", "status", "step", "steps", "reason", "started_at", "updated_at"}
