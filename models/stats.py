"""Outcome counts per minute of event time, kept so that each order counts once per measure.

A *bucket* holds one minute of one writer: the saga agent on one partition counts orders placed
(by the order's ``occurred_at``) and outcomes (by the time the saga ended), and the agent of any
topic partition counts the records it dead-letters (by the record's timestamp). The 1-minute and
5-minute windows of ``GET /stats`` are sums of buckets (``tables/windows.py``).

Counting once: a bucket remembers the position (``Incoming.position``) of the last input that counted
into it. Its writer reads its partition in order, so an input at or below that position is already in the bucket
however the worker died between its writes; the saga state remembers at which input the order was
placed and ended, so a redelivery whose saga write survived but whose count did not counts then.
No Faust, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from models.effects import Reader, Write
from models.evolve import evolve
from models.measures import DeadLettered, Measure, Placed
from models.money import ZERO, format_money, parse_money

STATS = "stats"
BUCKET = timedelta(minutes=1)
#: buckets kept: 60 one-minute windows, and the 4 minutes before them for the oldest 5-minute window
RETENTION = timedelta(minutes=65)
#: upper bounds (ms) of the saga-duration histogram; longer sagas fall in one last bucket
DURATION_BOUNDS_MS = (
    10, 25, 50, 100, 250, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 6_000, 7_500, 10_000, 15_000,
    30_000, 60_000, 120_000, 300_000, 600_000,
)
REASONS = ("OUT_OF_STOCK", "PAYMENT_DECLINED", "TIMEOUT")


@dataclass(frozen=True)
class Bucket:
    """What one writer counted in one minute; also the sum of many, for a window."""

    placed: int = 0
    confirmed: int = 0
    cancelled: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    revenue: Decimal = ZERO
    durations: tuple[int, ...] = (0,) * (len(DURATION_BOUNDS_MS) + 1)
    max_ms: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    #: position of the last input counted here; -1 for a sum
    last_input: int = -1

    def body(self) -> dict[str, Any]:
        """As JSON types: the table value, and what one worker tells another."""
        return {"placed": self.placed, "confirmed": self.confirmed, "cancelled": dict(self.cancelled),
                "revenue": format_money(self.revenue), "durations": self.durations, "max_ms": self.max_ms,
                "dead_letters": dict(self.dead_letters), "last_input": self.last_input}

    def to_json(self) -> bytes:
        """The table value."""
        return orjson.dumps(self.body())

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Bucket:
        """Read what :meth:`body` gave."""
        return cls(**{**body, "revenue": parse_money(body["revenue"]), "durations": tuple(body["durations"])})

    @classmethod
    def from_json(cls, raw: bytes) -> Bucket:
        """Read a table value written by :meth:`to_json`."""
        return cls.from_body(orjson.loads(raw))

    def __add__(self, other: Bucket) -> Bucket:
        return Bucket(
            placed=self.placed + other.placed,
            confirmed=self.confirmed + other.confirmed,
            cancelled=_sum_counts(self.cancelled, other.cancelled),
            revenue=self.revenue + other.revenue,
            durations=tuple(a + b for a, b in zip(self.durations, other.durations, strict=True)),
            max_ms=max(self.max_ms, other.max_ms),
            dead_letters=_sum_counts(self.dead_letters, other.dead_letters),
        )

    def percentile(self, q: float) -> int:
        """The upper bound of the histogram bucket holding the ``q`` quantile, at most the maximum."""
        count = sum(self.durations)
        if count == 0:
            return 0
        rank, seen = max(1, math.ceil(q * count)), 0
        for bound, n in zip((*DURATION_BOUNDS_MS, self.max_ms), self.durations, strict=True):
            seen += n
            if seen >= rank:
                return min(bound, self.max_ms)
        raise AssertionError("the ranks add up to the count")

    def view(self, start: datetime, end: datetime) -> dict[str, Any]:
        """One window as ``GET /stats`` shows it."""
        return {
            "start": _stamp(start),
            "end": _stamp(end),
            "placed": self.placed,
            "confirmed": self.confirmed,
            "cancelled": {reason: self.cancelled.get(reason, 0) for reason in REASONS},
            "revenue": format_money(self.revenue),
            "saga_ms": {"count": sum(self.durations), "p50": self.percentile(0.5), "p99": self.percentile(0.99),
                        "max": self.max_ms},
            "dead_letters": dict(sorted(self.dead_letters.items())),
        }


def _sum_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {key: a.get(key, 0) + b.get(key, 0) for key in a.keys() | b.keys()}


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- what one input adds ---------------------------------------------------------------------


def added(bucket: Bucket, measure: Measure) -> Bucket:
    """The bucket with one more of ``measure``."""
    if isinstance(measure, Placed):
        return evolve(bucket, placed=bucket.placed + 1)
    if isinstance(measure, DeadLettered):
        topic = measure.topic
        return evolve(
            bucket, dead_letters={**bucket.dead_letters, topic: bucket.dead_letters.get(topic, 0) + 1}
        )
    ms = duration_ms(measure.duration)
    slot = next((i for i, bound in enumerate(DURATION_BOUNDS_MS) if ms <= bound), len(DURATION_BOUNDS_MS))
    durations = tuple(n + (i == slot) for i, n in enumerate(bucket.durations))
    if measure.status == "COMPLETED":
        return evolve(bucket, confirmed=bucket.confirmed + 1, revenue=bucket.revenue + measure.total,
                      durations=durations, max_ms=max(bucket.max_ms, ms))
    reason = str(measure.reason)
    cancelled = {**bucket.cancelled, reason: bucket.cancelled.get(reason, 0) + 1}
    return evolve(bucket, cancelled=cancelled, durations=durations, max_ms=max(bucket.max_ms, ms))


def duration_ms(duration: timedelta) -> int:
    """A saga's duration in whole milliseconds, never negative (clocks of two workers may disagree)."""
    return max(0, round(duration / timedelta(milliseconds=1)))


# --- keys and writes -------------------------------------------------------------------------


def minute_of(moment: datetime) -> int:
    """The start of the bucket holding ``moment``, in seconds since the epoch."""
    return int(moment.timestamp() // BUCKET.total_seconds()) * int(BUCKET.total_seconds())


def bucket_key(minute: int, topic: str, partition: int) -> str:
    """The key of one writer's bucket: the minute, then the input partition it counts."""
    return f"{minute}|{partition}|{topic}"


def index_key(topic: str, partition: int) -> str:
    """The key listing one writer's buckets, so that it can delete those past retention."""
    return f"index|{partition}|{topic}"


def parse_bucket_key(key: str) -> tuple[int, int, str] | None:
    """(minute, partition, topic) of a bucket key; None for an index key."""
    minute, partition, topic = key.split("|", 2)
    return None if minute == "index" else (int(minute), int(partition), topic)


def count(
    read: Reader, topic: str, partition: int, position: int, now: datetime, measures: Iterable[Measure]
) -> list[Write]:
    """The writes that count input ``position`` of ``topic[partition]``, each measure in the bucket of its time.

    A bucket that already counted this input (or a later one) is left alone; a message handed over within
    the worker (a negative position, ``models.effects.INLINE_OFFSET``) has no place to compare and counts each
    time, which exactly_once, the only guarantee that hands messages over, makes once. A time older than the
    retention is not counted at all. A new bucket is added to the writer's index first, and the
    index drops, with their buckets, those past retention.
    """
    oldest = minute_of(now - RETENTION)
    by_minute: dict[int, list[Measure]] = {}
    for measure in measures:
        if (minute := minute_of(measure.at)) >= oldest:
            by_minute.setdefault(minute, []).append(measure)
    writes: list[Write] = []
    for minute, minute_measures in sorted(by_minute.items()):
        key = bucket_key(minute, topic, partition)
        raw = read(STATS, key)
        bucket = Bucket.from_json(raw) if raw is not None else Bucket()
        if position >= 0 and bucket.last_input >= position:
            continue
        if raw is None:
            writes += _indexed(read, topic, partition, minute, oldest)
        last_input = max(bucket.last_input, position)
        for measure in minute_measures:
            bucket = added(bucket, measure)
        writes.append(Write(STATS, key, evolve(bucket, last_input=last_input).to_json()))
    return writes


def _indexed(read: Reader, topic: str, partition: int, minute: int, oldest: int) -> list[Write]:
    """Add ``minute`` to the writer's index; delete the buckets it lists that are past retention."""
    key = index_key(topic, partition)
    raw = read(STATS, key)
    listed: list[int] = orjson.loads(raw) if raw is not None else []
    expired = [each for each in listed if each < oldest]
    kept = sorted({each for each in listed if each >= oldest} | {minute})
    return [Write(STATS, key, orjson.dumps(kept))] + [
        Write(STATS, bucket_key(each, topic, partition), None) for each in expired
    ]
