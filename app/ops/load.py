"""``streamsaga load``: place orders at a rate (or as fast as possible) and report what became of them.

It seeds its own customers (funded, and some with no money) and skus (stocked, and one empty),
under a run id so that runs do not share state, places the orders with a progress bar, follows
``order-events`` until each has its outcome, and prints the outcomes and the latency from each
``OrderPlaced`` to its outcome, as record timestamps tell them.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
from aiokafka import TopicPartition

from app.ops import kafka, progress
from app.ops.args import UsageError
from config.settings import Settings
from models.events import (
    MAX_QUANTITY,
    Event,
    FundsAdded,
    OrderLine,
    OrderPlaced,
    StockAdded,
    UserRegistered,
    format_time,
    utc_now,
)
from models.topics import ORDER_EVENTS, topic_of

EXAMPLES = """examples:
  streamsaga load --orders 1000                       # as fast as possible, 10% of them failing
  streamsaga load --orders 6000 --rate 100            # 100 orders a second for a minute
  streamsaga load --orders 500 --fail-share 0.5 --customers 20 --skus 5
"""
PRICE = Decimal("2.50")
STOCK_PER_SKU = MAX_QUANTITY
FUNDS = Decimal("999999999.00")


def add(commands: Any) -> None:
    """The ``load`` command."""
    parser = commands.add_parser("load", help="place orders and report their outcomes and latency",
                                 epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1000, help="how many orders (default 1000)")
    parser.add_argument("--rate", type=float, default=0.0, help="orders per second; 0 (default): as fast as possible")
    parser.add_argument("--customers", type=int, default=100, help="customers with money (default 100)")
    parser.add_argument("--skus", type=int, default=20, help="stocked skus (default 20)")
    parser.add_argument("--fail-share", type=float, default=0.1,
                        help="share of orders meant to fail, half out of stock, half declined (default 0.1)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the last outcome")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable mix")
    parser.add_argument("--url", help="a worker's web address, to see the seed applied before the orders go "
                        "(default: STREAMSAGA_WEB_HOST and _WEB_PORT)")
    parser.set_defaults(run=run)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Seed, place, follow, report; exit 1 if some order had no outcome in time."""
    if args.orders < 1 or args.customers < 1 or args.skus < 1:
        raise UsageError("--orders, --customers and --skus must be at least 1")
    if not 0 <= args.fail_share <= 1 or args.rate < 0 or args.timeout <= 0:
        raise UsageError("--fail-share must be from 0 to 1, --rate not negative, --timeout positive")
    run_id = uuid.uuid4().hex[:8]
    rng = random.Random(args.seed)
    plan = Plan(run_id, args.customers, args.skus)
    orders = [plan.order(n, rng, args.fail_share) for n in range(args.orders)]
    order_topic = settings.topic(ORDER_EVENTS)
    async with kafka.consumer(settings) as consumer:
        tps = [TopicPartition(order_topic, p) for p in await kafka.partitions_of(consumer, order_topic)]
        start = await consumer.end_offsets(tps)
        async with kafka.producer(settings) as producer:
            for event in plan.seed():
                await _send(producer, settings, event)
            await producer.flush()
            url = (args.url or settings.web_url).rstrip("/")
            await _seeded(url, plan, args.timeout)
            placed_at = time.monotonic()
            with progress.bar(len(orders), f"placing (run {run_id})") as bar:
                for n, order in enumerate(orders):
                    if args.rate > 0:
                        await asyncio.sleep(max(0.0, placed_at + n / args.rate - time.monotonic()))
                    await _send(producer, settings, order)
                    bar.update(1)
            await producer.flush()
        print(f"placed {len(orders)} orders in {time.monotonic() - placed_at:.1f} s (run {run_id})")
        wanted = {order.order_id: order for order in orders}
        outcomes = await _follow(consumer, {tp: start[tp] for tp in tps}, wanted, args.timeout)
    return _report(orders, outcomes)


class Plan:
    """The run's customers and skus, and what each order is meant to be."""

    def __init__(self, run_id: str, customers: int, skus: int) -> None:
        self.run_id = run_id
        self.rich = [f"load-{run_id}-c{n}" for n in range(customers)]
        self.broke = f"load-{run_id}-broke"
        self.skus = [f"load-{run_id}-sku{n}" for n in range(skus)]
        self.empty = f"load-{run_id}-empty"

    def seed(self) -> list[Event]:
        """Registered, funded customers (one with no money) and stocked skus (one with none)."""
        events: list[Event] = []
        for customer in [*self.rich, self.broke]:
            events.append(UserRegistered(**_ids(), customer_id=customer, name=customer, email=f"{customer}@load.test"))
        events += [FundsAdded(**_ids(), customer_id=customer, amount=FUNDS) for customer in self.rich]
        events += [StockAdded(**_ids(), sku=sku, quantity=STOCK_PER_SKU) for sku in self.skus]
        return events

    def order(self, n: int, rng: random.Random, fail_share: float) -> OrderPlaced:
        """One or two stocked lines from a funded customer; a failing one adds the empty sku or is the broke one's."""
        lines = [OrderLine(sku=sku, quantity=rng.randint(1, 3), unit_price=PRICE)
                 for sku in rng.sample(self.skus, min(2, len(self.skus)))]
        customer = rng.choice(self.rich)
        if rng.random() < fail_share:
            if rng.random() < 0.5:
                lines.append(OrderLine(sku=self.empty, quantity=1, unit_price=PRICE))
            else:
                customer = self.broke
        total = sum((line.quantity * line.unit_price for line in lines), Decimal("0.00"))
        return OrderPlaced(**_ids(), order_id=f"load-{self.run_id}-o{n}", customer_id=customer,
                           items=tuple(lines), total_amount=total)


async def _seeded(url: str, plan: Plan, timeout: float) -> None:
    """Until a worker shows the run's stock and wallets: orders placed before would find nothing."""
    paths = [f"/inventory/{sku}" for sku in plan.skus] + [f"/wallets/{c}" for c in plan.rich]
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while paths:
            try:
                async with session.get(f"{url}{paths[0]}") as response:
                    if response.status == 200:
                        paths.pop(0)
                        continue
            except aiohttp.ClientConnectionError as exc:
                raise UsageError(f"no worker answers at {url} ({exc})") from None
            if time.monotonic() > deadline:
                raise UsageError(f"the worker at {url} did not apply the seed within {timeout:.0f} s")
            await asyncio.sleep(0.2)


async def _send(producer: Any, settings: Settings, event: Event) -> None:
    await producer.send(settings.topic(topic_of(event.event_type)), key=event.aggregate_id.encode(),
                        value=event.encode(), headers=list(event.headers().items()))


async def _follow(consumer: Any, start: dict[TopicPartition, int], wanted: dict[str, OrderPlaced],
                  timeout: float) -> dict[str, tuple[str, float]]:
    """Each wanted order's outcome (``CONFIRMED`` or the reason) and its latency in seconds."""
    consumer.assign(list(start))
    for tp, offset in start.items():
        consumer.seek(tp, offset)
    placed: dict[str, float] = {}
    ended: dict[str, tuple[str, float]] = {}
    deadline = time.monotonic() + timeout
    with progress.bar(len(wanted), "waiting for outcomes") as bar:
        while len(ended) < len(wanted) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for record in records:
                    body = orjson.loads(record.value) if record.value else {}
                    order_id, kind = body.get("order_id"), body.get("event_type")
                    if order_id not in wanted or order_id in ended:
                        continue
                    if kind == "OrderPlaced":
                        placed.setdefault(order_id, record.timestamp / 1000)
                    elif kind in ("OrderConfirmed", "OrderCancelled") and order_id in placed:
                        outcome = "CONFIRMED" if kind == "OrderConfirmed" else str(body.get("reason"))
                        ended[order_id] = (outcome, record.timestamp / 1000 - placed[order_id])
                        bar.update(1)
    return ended


def _report(orders: list[OrderPlaced], outcomes: dict[str, tuple[str, float]]) -> int:
    kinds = Counter(outcome for outcome, _ in outcomes.values())
    latencies = sorted(latency for _, latency in outcomes.values())
    print(f"outcomes: {len(outcomes)} of {len(orders)} orders: "
          + ", ".join(f"{kind} {n}" for kind, n in kinds.most_common()))
    if latencies:
        print("latency from OrderPlaced to its outcome: " + ", ".join(
            f"p{q} {_quantile(latencies, q / 100) * 1000:.0f} ms" for q in (50, 95, 99)
        ) + f", max {latencies[-1] * 1000:.0f} ms")
    missing = len(orders) - len(outcomes)
    if missing:
        print(f"{missing} orders had no outcome in time")
        return 1
    return 0


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def _ids() -> dict[str, str]:
    return {"event_id": str(uuid.uuid4()), "occurred_at": format_time(utc_now())}
