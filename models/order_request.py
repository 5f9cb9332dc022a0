"""Turn a ``POST /orders`` body into an ``OrderPlaced`` event, or a list of every error in it."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from models.events import MAX_ID, MAX_ORDER_LINES, MAX_QUANTITY, OrderLine, OrderPlaced, format_time
from models.money import MAX_MONEY, format_money, parse_money

ID_RULE = f"must be a non-empty string of at most {MAX_ID} characters, without NUL"


def order_from_request(body: Any, now: datetime) -> OrderPlaced | list[str]:
    """The event to write for a request body, or the errors that stop it, all at once."""
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    errors: list[str] = []
    customer_id = body.get("customer_id")
    if not _is_id(customer_id):
        errors.append(f"customer_id {ID_RULE}")
    order_id = body.get("order_id", None)
    if order_id is None:
        order_id = str(uuid.uuid4())
    elif not _is_id(order_id):
        errors.append(f"order_id {ID_RULE} when given")
    items = body.get("items")
    lines: list[OrderLine] = []
    if not isinstance(items, list) or not items:
        errors.append("items must be a non-empty list")
    elif len(items) > MAX_ORDER_LINES:
        errors.append(f"items may have at most {MAX_ORDER_LINES} lines")
    else:
        for index, item in enumerate(items):
            line = _line(item, f"items[{index}]", errors)
            if line is not None:
                lines.append(line)
    total = sum((line.quantity * line.unit_price for line in lines), Decimal("0.00"))
    if total > MAX_MONEY:
        errors.append(f"the order's total {format_money(total)} is more than {format_money(MAX_MONEY)}")
    if errors:
        return errors
    return OrderPlaced(
        event_id=str(uuid.uuid4()),
        occurred_at=format_time(now),
        order_id=str(order_id),
        customer_id=str(customer_id),
        items=tuple(lines),
        total_amount=total,
    )


def _line(item: Any, where: str, errors: list[str]) -> OrderLine | None:
    """One order line, or its errors appended to ``errors``."""
    if not isinstance(item, dict):
        errors.append(f"{where} must be an object with sku, quantity and unit_price")
        return None
    found = len(errors)
    sku, quantity = item.get("sku"), item.get("quantity")
    if not _is_id(sku):
        errors.append(f"{where}.sku {ID_RULE}")
    if not isinstance(quantity, int) or isinstance(quantity, bool) or not 0 < quantity <= MAX_QUANTITY:
        errors.append(f"{where}.quantity must be an integer from 1 to {MAX_QUANTITY}")
    try:
        price = parse_money(item.get("unit_price"))
    except ValueError as exc:
        errors.append(f"{where}.unit_price {exc}")
    if len(errors) > found:
        return None
    return OrderLine(sku=str(sku), quantity=int(quantity), unit_price=price)  # type: ignore[arg-type]


def _is_id(value: Any) -> bool:
    """A usable id: a non-blank string of reasonable length, without NUL (as ``models.events`` reads ids)."""
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_ID and "\x00" not in value
