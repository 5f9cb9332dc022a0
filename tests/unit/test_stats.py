"""Windowed counts: each order once per measure, whatever the worker lost between its writes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from models import commands, handlers, stats
from models.effects import Effects, Incoming
from models.events import OrderLine, OrderPlaced, format_time
from models.measures import DeadLettered, Ended, Placed
from models.saga import SagaPolicy
from models.stats import STATS, Bucket

NOW = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
POLICY = SagaPolicy()
TOPIC = "saga-replies"
Tables = dict[tuple[str, str], bytes]


def order(order_id: str, at: datetime = NOW, total: str = "3.00") -> OrderPlaced:
    return OrderPlaced(event_id=f"e-{order_id}", occurred_at=format_time(at), order_id=order_id, customer_id="c-1",
                       items=(OrderLine(sku="A", quantity=2, unit_price=Decimal(total) / 2),),
                       total_amount=Decimal(total))


def reply(order_id: str, reserved: bool = False) -> commands.Message:
    if reserved:
        return commands.StockReserved(order_id=order_id, sku="A", quantity=2)
    return commands.StockRefused(order_id=order_id, sku="A", requested=2, available=0)


def feed(tables: Tables, message: commands.Message, offset: int, now: datetime = NOW, *, keep: str = "all",
         exactly_once: bool = False) -> Effects:
    """Handle one saga input at ``offset``; keep all its writes, or only those of one table (a crash between)."""
    key = getattr(message, "order_id")  # noqa: B009 - every saga message has one
    record = Incoming(TOPIC, 0, offset, key.encode(), message.encode(), now.timestamp())
    effects = handlers.saga(POLICY, exactly_once)(record, lambda table, k: tables.get((table, k)), now)
    for write in effects.writes:
        if keep != "all" and write.table != keep:
            continue
        if write.value is None:
            tables.pop((write.table, write.key), None)
        else:
            tables[(write.table, write.key)] = write.value
    return effects


def total(tables: Tables) -> Bucket:
    """Every bucket added up."""
    buckets = [Bucket.from_json(value) for (table, key), value in tables.items()
               if table == STATS and stats.parse_bucket_key(key) is not None]
    return sum(buckets, Bucket())


def test_placed_and_ended_count_once_each_in_the_minute_of_their_event_time() -> None:
    tables: Tables = {}
    placed_at = NOW - timedelta(minutes=3)
    feed(tables, order("o-1", placed_at), 0)
    feed(tables, reply("o-1"), 1, NOW + timedelta(seconds=40))
    placed_bucket = Bucket.from_json(tables[(STATS, stats.bucket_key(stats.minute_of(placed_at), TOPIC, 0))])
    ended_bucket = Bucket.from_json(tables[(STATS, stats.bucket_key(stats.minute_of(NOW) + 60, TOPIC, 0))])
    assert (placed_bucket.placed, placed_bucket.cancelled["OUT_OF_STOCK"]) == (1, 0)
    assert (ended_bucket.placed, ended_bucket.cancelled["OUT_OF_STOCK"]) == (0, 1)
    assert ended_bucket.max_ms == 40_000, "from the saga's start to its end"


@pytest.mark.parametrize("exactly_once", [False, True])
def test_an_order_placed_twice_and_replies_sent_twice_count_once(exactly_once: bool) -> None:
    tables: Tables = {}
    offsets = iter(range(100))
    for message in [order("o-1"), order("o-1"), reply("o-1", reserved=True), reply("o-1", reserved=True)]:
        feed(tables, message, next(offsets), exactly_once=exactly_once)
    feed(tables, commands.PaymentCharged(order_id="o-1", amount=Decimal("3.00")), next(offsets))
    feed(tables, commands.PaymentCharged(order_id="o-1", amount=Decimal("3.00")), next(offsets))
    counted = total(tables)
    assert (counted.placed, counted.confirmed, counted.revenue) == (1, 1, Decimal("3.00"))
    assert sum(counted.durations) == 1


@pytest.mark.parametrize("kept", ["sagas", "stats", "all", "none"])
def test_a_redelivery_after_a_crash_between_the_writes_counts_what_is_missing_and_nothing_twice(kept: str) -> None:
    """Changelogs of two tables are not written in step: any of them may have the input's write."""
    tables: Tables = {}
    feed(tables, order("o-1"), 0)
    feed(tables, reply("o-1"), 1, keep=kept)  # the worker dies after these writes reached the changelogs
    feed(tables, reply("o-1"), 1)  # the redelivery from the committed offset
    feed(tables, reply("o-1"), 2)  # and the reply re-sent, later in the partition
    counted = total(tables)
    assert (counted.placed, counted.cancelled["OUT_OF_STOCK"], sum(counted.durations)) == (1, 1, 1)


def test_the_metrics_hear_of_a_change_once_and_of_a_repair_not_at_all() -> None:
    tables: Tables = {}
    first = feed(tables, order("o-1"), 0)
    again = feed(tables, order("o-1"), 0)
    assert [type(each) for each in first.measures] == [Placed] and again.measures == ()


def test_an_order_older_than_the_retention_is_not_counted_and_old_buckets_leave_with_a_new_one() -> None:
    tables: Tables = {}
    feed(tables, order("old", NOW - stats.RETENTION - timedelta(minutes=1)), 0)
    assert total(tables).placed == 0
    feed(tables, order("o-1", NOW - timedelta(minutes=30)), 1)
    later = NOW + timedelta(minutes=40)  # the bucket of o-1 is past retention then
    feed(tables, order("o-2", later), 2, later)
    keys = sorted(key for table, key in tables if table == STATS)
    assert keys == [stats.bucket_key(stats.minute_of(later), TOPIC, 0), stats.index_key(TOPIC, 0)]
    assert orjson.loads(tables[(STATS, stats.index_key(TOPIC, 0))]) == [stats.minute_of(later)]


def test_percentiles_are_bucket_bounds_no_higher_than_the_maximum() -> None:
    bucket = Bucket()
    for ms in [5, 7, 80, 90, 95, 2_000]:
        bucket = stats.added(bucket, Ended(NOW, "COMPLETED", None, Decimal("1.00"), timedelta(milliseconds=ms)))
    assert (bucket.percentile(0.5), bucket.percentile(0.99), bucket.max_ms) == (100, 2_000, 2_000)
    assert Bucket().percentile(0.5) == 0
    assert Bucket.from_json(bucket.to_json()) == bucket


def test_buckets_add_up_every_measure() -> None:
    one = stats.added(stats.added(Bucket(), Placed(NOW)), DeadLettered(NOW, "order-events"))
    two = stats.added(Bucket(), Ended(NOW, "FAILED", "TIMEOUT", Decimal("9.99"), timedelta(seconds=301)))
    both = one + two
    assert (both.placed, both.cancelled["TIMEOUT"], both.dead_letters, both.max_ms) == (
        1, 1, {"order-events": 1}, 301_000)
    view = both.view(NOW, NOW + timedelta(minutes=1))
    assert view["saga_ms"] == {"count": 1, "p50": 301_000, "p99": 301_000, "max": 301_000}
    assert view["revenue"] == "0.00" and view["start"] == "2026-01-01T12:00:30Z"


def test_a_bucket_read_back_from_its_body_is_the_same_bucket_with_every_field() -> None:
    """``body`` names each field itself (asdict was an eighth of the saga's own time): none may be left out."""
    bucket = Bucket(placed=3, confirmed=2, cancelled={"OUT_OF_STOCK": 1, "PAYMENT_DECLINED": 0, "TIMEOUT": 0},
                    revenue=Decimal("12.50"), durations=tuple(range(len(stats.DURATION_BOUNDS_MS) + 1)), max_ms=880,
                    dead_letters={"order-events": 1}, last_input=7 << 16)
    assert set(bucket.body()) == {field.name for field in dataclasses.fields(Bucket)}
    assert Bucket.from_json(bucket.to_json()) == bucket
