"""The benchmark's data: seed events and a fixed mix of orders (80% confirmed, 10% out of stock, 10% declined)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from decimal import Decimal

from models.events import Event, FundsAdded, OrderLine, OrderPlaced, StockAdded, format_time, utc_now

SKUS = [f"SKU-{n:03d}" for n in range(50)]
PRICE = Decimal("1.50")
EMPTY_SKU = "SKU-EMPTY"
RICH = [f"rich-{n:03d}" for n in range(200)]
BROKE = [f"broke-{n:02d}" for n in range(20)]


def _ids() -> dict[str, str]:
    return {"event_id": str(uuid.uuid4()), "occurred_at": format_time(utc_now())}


def seed_events(orders: int) -> list[Event]:
    """Stock and money enough that only the designed failures happen."""
    stock = [StockAdded(**_ids(), sku=sku, quantity=1_000_000) for sku in SKUS]
    funds = [FundsAdded(**_ids(), customer_id=c, amount=Decimal("999999999.00")) for c in RICH]
    return [*stock, *funds]


def order_id(n: int) -> str:
    """The id of order ``n``, so the benchmark knows which outcomes to wait for."""
    return f"bench-{n:07d}"


def order(n: int, rng: random.Random, hot: bool = False) -> OrderPlaced:
    """Order ``n``: every tenth out of stock, every tenth (offset 5) from a customer with no money; ``hot``:
    all on one sku and one customer (one broke one), as in a flash sale."""
    skus = SKUS[:1] if hot else rng.sample(SKUS, 2)
    lines = [OrderLine(sku=sku, quantity=rng.randint(1, 3), unit_price=PRICE) for sku in skus]
    customer = RICH[0] if hot else rng.choice(RICH)
    if n % 10 == 0:
        lines.append(OrderLine(sku=EMPTY_SKU, quantity=1, unit_price=PRICE))
    elif n % 10 == 5:
        customer = BROKE[0] if hot else rng.choice(BROKE)
    total = sum((line.quantity * line.unit_price for line in lines), Decimal("0.00"))
    return OrderPlaced(**_ids(), order_id=order_id(n), customer_id=customer, items=tuple(lines),
                       total_amount=total)


def orders(count: int, seed: int = 5, hot: bool = False) -> Iterator[OrderPlaced]:
    """The fixed mix, reproducible by seed; ``hot``: on one sku and one wallet."""
    rng = random.Random(seed)
    return (order(n, rng, hot) for n in range(count))
