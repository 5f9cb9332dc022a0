"""What a handled message counts: an order placed, a saga ended, a record dead-lettered.

The handler says so as data; the executor counts it into the windows of ``GET /stats`` (through
``models.stats``) and into the worker's Prometheus metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Placed:
    """An order placed at ``at`` (its ``occurred_at``)."""

    at: datetime


@dataclass(frozen=True, slots=True)
class Ended:
    """A saga ended at ``at`` in ``status`` (with ``reason`` unless completed), ``duration`` after it started."""

    at: datetime
    status: str
    reason: str | None
    total: Decimal
    duration: timedelta


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A record of ``topic`` dead-lettered; ``at`` is the record's timestamp."""

    at: datetime
    topic: str


Measure = Placed | Ended | DeadLettered
