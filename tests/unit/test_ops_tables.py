"""The audit's view of retention: orders refused as expired, and sagas rightly gone from the views."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from app.ops.tables import arrived_expired, forgotten
from models.events import OrderConfirmed, OrderLine, OrderPlaced, format_time

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
ORDER = OrderPlaced(event_id="e-1", occurred_at=format_time(NOW), order_id="o-1", customer_id="c-1",
                    items=(OrderLine(sku="A", quantity=1, unit_price=Decimal("1.00")),), total_amount=Decimal("1.00"))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_an_order_that_reached_its_topic_a_retention_after_it_was_placed_is_expired() -> None:
    assert arrived_expired(ORDER, _ms(NOW + WEEK), WEEK)
    assert not arrived_expired(ORDER, _ms(NOW + WEEK - timedelta(seconds=1)), WEEK)


def test_a_saga_is_rightly_gone_once_its_retention_passed_after_its_end_or_its_order_if_later() -> None:
    ended = OrderConfirmed(event_id="e-2", occurred_at=format_time(NOW + timedelta(minutes=1)), order_id="o-1",
                           customer_id="c-1", total_amount=Decimal("1.00"))
    assert not forgotten(ORDER, ended, NOW + WEEK, WEEK)
    assert forgotten(ORDER, ended, NOW + WEEK + timedelta(minutes=1), WEEK)
    placed_late = dataclasses.replace(ORDER, occurred_at=format_time(NOW + timedelta(hours=1)))
    assert not forgotten(placed_late, ended, NOW + WEEK + timedelta(minutes=1), WEEK)
