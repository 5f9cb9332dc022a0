"""The per-record handlers: their effects as data, keys, the deadline index and the timer's decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from models import commands, handlers, stats
from models.commands import ReserveStock, SagaTimeout, StockReserved
from models.effects import Effects, Incoming, Send, Write
from models.events import BadMessage, OrderLine, OrderPlaced, format_time
from models.handlers import DEADLINES, SAGAS, STATS, STOCK
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
    assert ended.writes[-1] == Write(DEADLINES, "o-1", None)
    assert SagaState.from_json(ended.writes[0].value or b"").status == "FAILED"
    tables[(SAGAS, "o-1")] = ended.writes[0].value or b""  # the crash came before the index delete
    again = saga(record(refused.encode(), b"o-1"), reader(tables), NOW)
    assert again.writes == (Write(DEADLINES, "o-1", None),), "the redelivery repairs the index"
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
