"""Demo data for ``make run``: customers, stock and wallets, then a trickle of orders."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Iterable
from decimal import Decimal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app.kafka_clients import client_options
from config.settings import Settings
from models.events import Event, FundsAdded, OrderLine, OrderPlaced, StockAdded, UserRegistered, format_time, utc_now
from models.topics import topic_of

CUSTOMERS = [(f"customer-{n}", name) for n, name in enumerate(["Ada", "Brian", "Chen", "Dana", "Emeka", "Fatima"], 1)]
PRODUCTS = {"SKU-APPLE": Decimal("0.50"), "SKU-BREAD": Decimal("2.20"), "SKU-CHEESE": Decimal("7.90"),
            "SKU-DATES": Decimal("4.10"), "SKU-EGGS": Decimal("3.00"), "SKU-FIGS": Decimal("5.50")}
STOCK = {"SKU-APPLE": 5000, "SKU-BREAD": 2000, "SKU-CHEESE": 300, "SKU-DATES": 600, "SKU-EGGS": 1500, "SKU-FIGS": 8}
FUNDS = {"customer-1": "5000.00", "customer-2": "2500.00", "customer-3": "1200.00",
         "customer-4": "60.00", "customer-5": "30.00", "customer-6": "10.00"}


def _common() -> dict[str, str]:
    """A fresh id and timestamp for an event the demo writes."""
    return {"event_id": str(uuid.uuid4()), "occurred_at": format_time(utc_now())}


def seed_events() -> list[Event]:
    """Customers who register and fund their wallets, and stock for every product."""
    events: list[Event] = []
    for customer_id, name in CUSTOMERS:
        events.append(UserRegistered(**_common(), customer_id=customer_id, name=name,
                                     email=f"{name.lower()}@example.com"))
        events.append(FundsAdded(**_common(), customer_id=customer_id, amount=Decimal(FUNDS[customer_id])))
    events += [StockAdded(**_common(), sku=sku, quantity=qty) for sku, qty in STOCK.items()]
    return events


def random_order(rng: random.Random) -> OrderPlaced:
    """An order of one to three products from a random customer."""
    skus = rng.sample(sorted(PRODUCTS), rng.randint(1, 3))
    lines = tuple(OrderLine(sku=sku, quantity=rng.randint(1, 4), unit_price=PRODUCTS[sku]) for sku in skus)
    return OrderPlaced(
        **_common(),
        order_id=f"demo-{uuid.uuid4().hex[:12]}",
        customer_id=rng.choice(CUSTOMERS)[0],
        items=lines,
        total_amount=sum((line.quantity * line.unit_price for line in lines), Decimal("0.00")),
    )


async def produce(settings: Settings, events: Iterable[Event]) -> int:
    """Write events to their public topics, keyed by aggregate id, with the contract's headers."""
    producer = AIOKafkaProducer(**client_options(settings), acks="all",
                                enable_idempotence=True, linger_ms=5)
    await producer.start()
    count = 0
    try:
        for event in events:
            await producer.send(
                settings.topic(topic_of(event.event_type)),
                value=event.encode(),
                key=event.aggregate_id.encode(),
                headers=list(event.headers().items()),
            )
            count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


async def trickle(settings: Settings, stop: asyncio.Event, worker_up: asyncio.Event, seed: int = 7) -> int:
    """Place a random order every ``demo_order_interval_s`` until ``stop`` is set, while the worker is up."""
    rng = random.Random(seed)
    placed = 0
    while not stop.is_set():
        if not worker_up.is_set():
            await _first(stop, worker_up)
            continue
        order = random_order(rng)
        await produce(settings, [order])
        placed += 1
        print(f"placed {order.order_id} for {order.customer_id}: {order.total_amount}", flush=True)
        with contextlib.suppress(TimeoutError):  # the interval passed without a stop
            await asyncio.wait_for(stop.wait(), settings.demo_order_interval_s)
    return placed


async def _first(*events: asyncio.Event) -> None:
    """Wait until one of the events is set."""
    waits = [asyncio.create_task(event.wait()) for event in events]
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in pending:
        wait.cancel()


async def watch_outcomes(settings: Settings, stop: asyncio.Event) -> None:
    """Print each order's outcome as the app writes it, so ``make run`` shows the saga at work."""
    consumer = AIOKafkaConsumer(settings.topic("order-events"), **client_options(settings),
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    body = orjson.loads(message.value) if message.value else {}
                    if body.get("event_type") == "OrderConfirmed":
                        print(f"  confirmed {body['order_id']}: charged {body['total_amount']}", flush=True)
                    elif body.get("event_type") == "OrderCancelled":
                        print(f"  cancelled {body['order_id']}: {body['reason']}", flush=True)
    finally:
        await consumer.stop()


def main() -> None:
    """``python -m devtools.demo``: write the demo customers, wallets and stock to the configured broker."""
    from app.admin import ensure_topics

    settings = Settings.from_env()
    asyncio.run(ensure_topics(settings))
    print(f"wrote {asyncio.run(produce(settings, seed_events()))} demo events")


if __name__ == "__main__":
    main()
