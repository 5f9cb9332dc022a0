"""The per-record handlers: their effects as data, keys, the deadline index and the timer's decision."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from models import commands, handlers, stats
from models.commands import ForgetSaga, ReserveStock, SagaTimeout, StockReserved
from models.effects import Effects, Incoming, Send, Write
from models.events import BadMessage, OrderLine, OrderPlaced, format_time
from models.handlers import DEADLINES, EXPIRY, SAGAS, STATS, STOCK, ExpiredOrder
from models.saga import SagaPolicy, SagaState

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = SagaPolicy(timeout=timedelta(minutes=5))


def order(order_id: str = "o-1") -> OrderPlaced:
    return OrderPlaced(event_id=f"e-{order_id}", occurred_at=format_time(NOW), order_id=order_id, customer_id="c-1",
                       items=(OrderLine(sku="A", quantity=2, unit_price=Decimal("1.50")),),
                       total_amount=Decimal("3.00"))


def record(value: bytes, key: bytes | None, topic: str = "t", offset: int = 7, index: int | None = None) -> Incoming:
    return Incoming(topic, 0, offset, key, value, NOW.timestamp(), index)


def reader(tables: dict[tuple[str, str], bytes]) -> handlers.Reader:
    return lambda table, key: tables.get((table, key))


def apply(tables: dict[tuple[str, str], bytes], effects: Effects) -> None:
    for write in effects.writes:
        if write.value is None:
            del tables[(write.table, write.key)]
        else:
            tables[(write.table, write.key)] = write.value


def test_a_new_saga_writes_its_state_and_its_deadline_then_sends_its_first_outputs() -> None:
    effects = handlers.saga(POLICY, False)(record(order().encode(), b"o-1"), reader({}), NOW)
    minute = stats.minute_of(NOW)
    assert [(w.table, w.key) for w in effects.writes] == [
        (SAGAS, "o-1"), (DEADLINES, "o-1"), (STATS, "index|0|t"), (STATS, f"{minute}|0|t")
    ]
    assert effects.writes[1].value == format_time(NOW + timedelta(minutes=5)).encode()
    assert Send(commands.STOCK, "A", ReserveStock(order_id="o-1", sku="A", quantity=2)) in effects.sends
    assert {send.topic for send in effects.sends} == {commands.STOCK, "saga-events"}


def test_an_ended_saga_leaves_the_deadline_index_and_a_duplicate_repairs_a_missing_delete() -> None:
    tables: dict[tuple[str, str], bytes] = {}
    saga = handlers.saga(POLICY, False, measure=False)
    apply(tables, saga(record(order().encode(), b"o-1"), reader(tables), NOW))
    refused = commands.StockRefused(order_id="o-1", sku="A", requested=2, available=0)
    ended = saga(record(refused.encode(), b"o-1"), reader(tables), NOW)
    entry = f"{format_time(NOW + POLICY.retention)}|o-1"
    assert ended.writes[1:] == (Write(DEADLINES, "o-1", None), Write(EXPIRY, entry, b"o-1"))
    assert SagaState.from_json(ended.writes[0].value or b"").status == "FAILED"
    tables[(SAGAS, "o-1")] = ended.writes[0].value or b""  # the crash came before the index writes
    again = saga(record(refused.encode(), b"o-1"), reader(tables), NOW)
    assert again.writes == (Write(DEADLINES, "o-1", None), Write(EXPIRY, entry, b"o-1")), "a redelivery repairs both"
    resent = {send.message for send in again.sends}
    assert {send.message for send in ended.sends} <= resent, "and re-sends everything the ending sent"


@pytest.mark.parametrize(("key", "reason"), [
    (None, "record has no key"),
    (b"\xff\xfe", "key is not UTF-8"),
    (b"B", "key 'B' is not the body's 'A'"),
])
def test_an_internal_record_whose_key_is_not_its_owner_s_is_a_bad_message(key: bytes | None, reason: str) -> None:
    value = ReserveStock(order_id="o-1", sku="A", quantity=1).encode()
    with pytest.raises(BadMessage) as raised:
        handlers.stock(False)(record(value, key), reader({}), NOW)
    assert raised.value.reason == reason


@pytest.mark.parametrize("key", [None, b"\xff\xfe", b"another-order"])
def test_a_public_record_goes_by_its_body_whatever_its_key(key: bytes | None) -> None:
    effects = handlers.ingress("order-events", "internal")(record(order().encode(), key), reader({}), NOW)
    assert effects == Effects(sends=(Send(commands.SAGA, "o-1", order()),))


def test_a_stock_reply_is_routed_to_the_saga_by_order_id() -> None:
    tables: dict[tuple[str, str], bytes] = {}
    apply(tables, handlers.stock(False)(record(b'{"event_id":"s1","event_type":"StockAdded","occurred_at":"'
                                        + format_time(NOW).encode() + b'","version":1,"sku":"A","quantity":5}', b"A"),
                                 reader(tables), NOW))
    effects = handlers.stock(False)(record(ReserveStock(order_id="o-1", sku="A", quantity=2).encode(), b"A"),
                             reader(tables), NOW)
    assert [w.table for w in effects.writes] == [STOCK]
    assert effects.sends == (Send(commands.SAGA, "o-1", StockReserved(order_id="o-1", sku="A", quantity=2)),)


@pytest.mark.parametrize(("exactly_once", "offset", "index", "resent"), [
    (False, 6, 9, True), (False, 7, 2, True),  # the message that changed the saga, or one before it: a redelivery
    (False, 7, 3, False), (False, 8, 0, False),  # sent twice, later: the first sends went out before it was read
    (True, 6, 9, False), (True, 7, 2, False), (True, 8, 0, False),  # committed with the state: never again
])
def test_a_duplicate_re_sends_only_when_its_first_sends_may_have_been_lost(
    exactly_once: bool, offset: int, index: int, resent: bool
) -> None:
    """Positions order messages by offset, then by their place in an envelope."""
    tables: dict[tuple[str, str], bytes] = {}
    saga = handlers.saga(POLICY, exactly_once)
    first = saga(record(order().encode(), b"o-1", offset=7, index=2), reader(tables), NOW)
    apply(tables, first)
    assert SagaState.from_json(tables[(SAGAS, "o-1")]).last_input == 7 << 16 | 2
    again = saga(record(order().encode(), b"o-1", offset=offset, index=index), reader(tables), NOW)
    assert again.writes == ()
    assert (again.sends == first.sends) if resent else (again.sends == ())


@pytest.mark.parametrize(("exactly_once", "offset", "resent"), [(False, 3, True), (False, 4, False), (True, 3, False)])
def test_stock_answers_a_repeated_reservation_again_only_when_redelivered(
    exactly_once: bool, offset: int, resent: bool
) -> None:
    tables = {(STOCK, "A"): b'{"sku":"A","available":5,"holds":{},"finished":{},"refusals":{},"added":[]}'}
    reserve = ReserveStock(order_id="o-1", sku="A", quantity=2).encode()
    first = handlers.stock(exactly_once)(record(reserve, b"A", offset=3), reader(tables), NOW)
    apply(tables, first)
    again = handlers.stock(exactly_once)(record(reserve, b"A", offset=offset), reader(tables), NOW)
    assert again.writes == () and again.sends == (first.sends if resent else ())


def test_customers_refuse_what_is_not_a_registration_without_retrying_it() -> None:
    with pytest.raises(BadMessage, match="customers do not handle ReserveStock"):
        handlers.customers(record(ReserveStock(order_id="o", sku="c", quantity=1).encode(), b"c"), reader({}), NOW)


def test_the_timer_tells_each_overdue_saga_once_then_again_only_after_ten_intervals() -> None:
    interval = timedelta(seconds=30)
    index = [(b"late", format_time(NOW - timedelta(seconds=1)).encode()),
             ("early", format_time(NOW + timedelta(hours=1)).encode())]
    effects, told = handlers.timeouts_due(index, NOW, {}, interval)
    assert effects == Effects(sends=(Send(commands.SAGA, "late", SagaTimeout(order_id="late")),))
    assert told == {"late": NOW}
    assert handlers.timeouts_due(index, NOW + 9 * interval, told, interval)[0] == Effects()
    again, told_again = handlers.timeouts_due(index, NOW + 10 * interval, told, interval)
    assert [send.key for send in again.sends] == ["late"] and told_again == {"late": NOW + 10 * interval}
    assert handlers.timeouts_due([], NOW, told, interval)[1] == {}, "an ended saga is forgotten"


def _ended(tables: dict[tuple[str, str], bytes], policy: SagaPolicy = POLICY, placed_at: datetime = NOW) -> None:
    """Run order o-1 (placed at ``placed_at``) to FAILED at NOW, its effects applied to ``tables``."""
    saga = handlers.saga(policy, True, measure=False)
    placed = dataclasses.replace(order(), occurred_at=format_time(placed_at))
    apply(tables, saga(record(placed.encode(), b"o-1"), reader(tables), NOW))
    refused = commands.StockRefused(order_id="o-1", sku="A", requested=2, available=0)
    apply(tables, saga(record(refused.encode(), b"o-1"), reader(tables), NOW))


def test_a_finished_saga_is_forgotten_with_its_index_entry_once_its_retention_passed() -> None:
    tables: dict[tuple[str, str], bytes] = {}
    _ended(tables)
    entry = f"{format_time(NOW + POLICY.retention)}|o-1"
    assert tables[(EXPIRY, entry)] == b"o-1"
    forget = record(ForgetSaga(order_id="o-1", entry=entry).encode(), b"o-1")
    saga = handlers.saga(POLICY, True, measure=False)
    early = saga(forget, reader(tables), NOW + POLICY.retention - timedelta(milliseconds=1))
    assert early == Effects(), "not before its time"
    due = saga(forget, reader(tables), NOW + POLICY.retention)
    assert due == Effects(writes=(Write(SAGAS, "o-1", None), Write(EXPIRY, entry, None)))
    apply(tables, due)
    assert tables == {}, "nothing of the saga is left"
    assert saga(forget, reader(tables), NOW + POLICY.retention) == Effects(), "told twice, it does nothing"


def test_a_saga_is_kept_its_retention_after_its_order_was_placed_if_that_is_later_than_its_end() -> None:
    tables: dict[tuple[str, str], bytes] = {}
    _ended(tables, placed_at=NOW + timedelta(hours=1))  # the producer's clock is an hour ahead
    assert (EXPIRY, f"{format_time(NOW + timedelta(hours=1) + POLICY.retention)}|o-1") in tables


def test_a_forget_told_under_an_older_retention_moves_the_entry_to_the_present_one() -> None:
    tables: dict[tuple[str, str], bytes] = {}
    _ended(tables)
    old_entry = f"{format_time(NOW + POLICY.retention)}|o-1"
    longer = dataclasses.replace(POLICY, retention=POLICY.retention * 2)
    forget = record(ForgetSaga(order_id="o-1", entry=old_entry).encode(), b"o-1")
    effects = handlers.saga(longer, True, measure=False)(forget, reader(tables), NOW + POLICY.retention)
    new_entry = f"{format_time(NOW + longer.retention)}|o-1"
    assert effects.writes == (Write(EXPIRY, new_entry, b"o-1"), Write(EXPIRY, old_entry, None))
    assert effects.sends == ()


def test_a_saga_in_progress_is_not_forgotten_and_has_no_expiry_entry() -> None:
    tables: dict[tuple[str, str], bytes] = {}
    saga = handlers.saga(POLICY, True, measure=False)
    apply(tables, saga(record(order().encode(), b"o-1"), reader(tables), NOW))
    assert not [key for key in tables if key[0] == EXPIRY]
    forget = record(ForgetSaga(order_id="o-1", entry=f"{format_time(NOW)}|o-1").encode(), b"o-1")
    assert saga(forget, reader(tables), NOW + 2 * POLICY.retention).writes == ()


def test_a_reply_for_a_forgotten_saga_still_gives_back_a_hold() -> None:
    late = record(StockReserved(order_id="o-1", sku="A", quantity=2).encode(), b"o-1")
    effects = handlers.saga(POLICY, True, measure=False)(late, reader({}), NOW)
    assert [send.message for send in effects.sends] == [commands.ReleaseStock(order_id="o-1", sku="A")]


def test_an_order_placed_longer_ago_than_the_retention_is_refused_at_ingress_with_its_reason() -> None:
    retention = timedelta(days=7)
    handle = handlers.ingress("order-events", "internal", retention)
    old = dataclasses.replace(order(), occurred_at=format_time(NOW - retention))
    with pytest.raises(ExpiredOrder) as raised:
        handle(record(old.encode(), b"o-1"), reader({}), NOW)
    assert raised.value.reason == (
        f"order o-1 was placed 7.0 days ago ({old.occurred_at}), longer than finished sagas are kept (7.0 days,"
        " STREAMSAGA_SAGA_RETENTION): it may repeat a forgotten order")
    recent = dataclasses.replace(order(), occurred_at=format_time(NOW - retention + timedelta(milliseconds=1)))
    assert [send.key for send in handle(record(recent.encode(), b"o-1"), reader({}), NOW).sends] == ["o-1"]


def test_the_saga_refuses_an_expired_order_only_when_it_has_no_saga_for_it() -> None:
    tables: dict[tuple[str, str], bytes] = {}
    _ended(tables)
    saga = handlers.saga(POLICY, True, measure=False)
    late = NOW + POLICY.retention
    assert saga(record(order().encode(), b"o-1"), reader(tables), late).sends == (), "a copy of a kept one: nothing"
    with pytest.raises(ExpiredOrder):
        saga(record(order("o-2").encode(), b"o-2"), reader(tables), late)


def test_the_timer_forgets_what_is_due_once_then_again_only_after_ten_intervals() -> None:
    interval = timedelta(seconds=30)
    entries = [f"{format_time(NOW - timedelta(seconds=1))}|o-1".encode(), f"{format_time(NOW)}|o-2",
               f"{format_time(NOW + timedelta(seconds=1))}|o-3"]
    effects, told = handlers.forgets_due(entries, NOW, {}, interval)
    assert [send.message for send in effects.sends] == [
        ForgetSaga(order_id="o-1", entry=entries[0].decode()),  # type: ignore[union-attr]
        ForgetSaga(order_id="o-2", entry=str(entries[1])),
    ]
    assert {send.topic for send in effects.sends} == {commands.SAGA}
    assert handlers.forgets_due(entries, NOW + 9 * interval, told, interval)[0].sends == (
        Send(commands.SAGA, "o-3", ForgetSaga(order_id="o-3", entry=str(entries[2]))),)
