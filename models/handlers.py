"""What each agent does with one record, as a pure function: ``(record, read, now) -> Effects``.

``read(table, key)`` gives a stored table value. A handler decodes the record, calls the domain
(saga, stock, wallet, customers) and returns every table write and every message to send; the
executor applies them. Bad input raises :class:`BadMessage`, which the executor dead-letters.
The agents and the simulator run these very functions. No Faust, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

import orjson

from models import commands, paged, stats
from models.commands import (
    Command,
    ForgetSaga,
    Message,
    PaymentCharged,
    PaymentDeclined,
    SagaTimeout,
    decode_message,
)
from models.effects import NOTHING, OUTPUT_MARK, Effects, Incoming, Reader, Send, Write, outputs
from models.events import (
    BadMessage,
    Event,
    FundsAdded,
    OrderPlaced,
    PaymentFailed,
    PaymentProcessed,
    StockAdded,
    UserRegistered,
    decode_event,
    format_time,
    parse_time,
)
from models.evolve import evolve
from models.measures import Ended, Measure, Placed
from models.saga import DEFAULT_RETENTION, SagaPolicy, SagaState, expired, forget_at, transition
from models.stock import MEMORY as STOCK_MEMORY
from models.stock import Stock, handle_stock
from models.topics import INVENTORY_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS, USER_EVENTS
from models.wallet import MEMORY as WALLET_MEMORY
from models.wallet import Wallet, handle_wallet

SAGAS, DEADLINES, STOCK, WALLETS, CUSTOMERS = "sagas", "saga_deadlines", "stock", "wallets", "customers"
#: when each finished saga is forgotten, keyed ``<time>|<order id>`` so the scan reads only what is due
EXPIRY = "saga_expiry"
STATS = stats.STATS
#: every table, by name
TABLES = (SAGAS, STOCK, WALLETS, CUSTOMERS, DEADLINES, EXPIRY, STATS)

#: how many timer intervals pass before a saga still overdue is told again
RETELL_INTERVALS = 10

Handler = Callable[[Incoming, Reader, datetime], Effects]


class ExpiredOrder(BadMessage):
    """An order placed longer ago than finished sagas are kept: it may repeat one already forgotten."""

    def __init__(self, order: OrderPlaced, now: datetime, retention: timedelta) -> None:
        age = now - parse_time(order.occurred_at)
        super().__init__(f"order {order.order_id} was placed {_days(age)} ago ({order.occurred_at}), longer than"
                         f" finished sagas are kept ({_days(retention)}, STREAMSAGA_SAGA_RETENTION):"
                         " it may repeat a forgotten order")


def _days(span: timedelta) -> str:
    """A span as people read it: days, else hours, else seconds."""
    seconds = span.total_seconds()
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds:.0f} s"

_OWN_OUTPUTS = {
    ORDER_EVENTS: {"OrderConfirmed", "OrderCancelled"},
    INVENTORY_EVENTS: {"InventoryReserved", "InventoryReservationFailed", "InventoryReleased"},
    PAYMENT_EVENTS: {"PaymentRequested", "PaymentRefunded"},
    USER_EVENTS: {"CustomerNotified"},
}
_ACCEPTED: dict[str, dict[type[Event], str]] = {
    ORDER_EVENTS: {OrderPlaced: commands.SAGA},
    INVENTORY_EVENTS: {StockAdded: commands.STOCK},
    PAYMENT_EVENTS: {FundsAdded: commands.WALLET},
    USER_EVENTS: {UserRegistered: commands.CUSTOMER},
}


# --- ingress: public topics ------------------------------------------------------------------


def own_outputs(topic: str, payment_mode: str) -> frozenset[str]:
    """The event types the app itself writes to a public input topic, which ingress ignores."""
    paid_here = topic == PAYMENT_EVENTS and payment_mode == "internal"
    return frozenset(_OWN_OUTPUTS[topic] | ({"PaymentProcessed", "PaymentFailed"} if paid_here else set()))


def route_public(topic: str, event: Event, payment_mode: str) -> tuple[str, Message] | None:
    """Where an event read from a public topic goes (internal topic, message); None for our own output."""
    if event.event_type in own_outputs(topic, payment_mode):
        return None
    destination = _ACCEPTED[topic].get(type(event))
    if destination is not None:
        return destination, event
    if topic == PAYMENT_EVENTS and isinstance(event, PaymentProcessed):
        return commands.SAGA, PaymentCharged(order_id=event.order_id, amount=event.amount)
    if topic == PAYMENT_EVENTS and isinstance(event, PaymentFailed):
        return commands.SAGA, PaymentDeclined(order_id=event.order_id, reason=event.reason)
    raise BadMessage(f"{event.event_type} is not accepted on {topic}")


def ingress(topic: str, payment_mode: str, retention: timedelta = DEFAULT_RETENTION) -> Handler:
    """The handler of a public topic: validate and forward to the owner by the body's aggregate id.

    The record's key is not used: the contract lets the body win, so a missing or odd key is harmless.
    An order placed longer ago than ``retention`` is refused: its saga, if it had one, may be forgotten.
    """
    policy = SagaPolicy(retention=retention)

    def handle(record: Incoming, read: Reader, now: datetime) -> Effects:
        event = decode_event(record.value)
        if isinstance(event, OrderPlaced) and expired(event, now, policy):
            raise ExpiredOrder(event, now, retention)
        forward = route_public(topic, event, payment_mode)
        if forward is None:
            return NOTHING
        destination, message = forward
        return Effects(sends=(Send(destination, _key_of(message), message),))

    return handle


def skippable(own: frozenset[str], headers: Iterable[tuple[str, bytes]], value: bytes | None) -> bool:
    """Whether a public record is one the app wrote (``OUTPUT_MARK``) of a type ingress ignores (``own``),
    by its body, which the contract says wins: such a record needs no handling at all."""
    if OUTPUT_MARK not in headers or value is None:
        return False
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and body.get("event_type") in own


def _key_of(message: Message) -> str:
    """The key a message is owned by: a command's key field, an event's aggregate id."""
    return message.key if isinstance(message, Command) else message.aggregate_id


# --- owners: internal topics -----------------------------------------------------------------


def owned_message(record: Incoming) -> tuple[str, Message]:
    """Decode an internal record and the key it belongs to.

    The key decides the partition, and so which worker owns the state: a record with no key, a key
    that is not UTF-8, or a key that is not its body's, is on a partition that may not own it.
    """
    if record.value is None:
        raise BadMessage("value is empty (tombstone)")
    message = decode_message(record.value)
    if record.key is None:
        raise BadMessage("record has no key")
    try:
        key = record.key.decode()
    except UnicodeDecodeError:
        raise BadMessage("key is not UTF-8") from None
    if key != _key_of(message):
        raise BadMessage(f"key {key!r} is not the body's {_key_of(message)!r}")
    return key, message


def resends(position: int, last_input: int, exactly_once: bool) -> bool:
    """Whether a duplicate (a message whose effect the state already holds) sends its outputs again.

    Under exactly_once never: the first processing's outputs were committed in the transaction that
    committed the state recording it. Under at_least_once only a redelivery after a crash does: the
    message that changed the state, or one before it, read again from the last committed offset
    (positions, ``Incoming.position``, order messages by offset, then by place in an envelope). Its
    first sends may have died with the worker. A duplicate at a later position (an input sent twice, a
    reply re-sent) comes after the first processing's sends were handed to the producer, which happens
    before the offset is committed: if those sends were lost, the change is redelivered and re-sends.
    """
    return not exactly_once and position <= last_input


def saga(policy: SagaPolicy, exactly_once: bool, measure: bool = True) -> Handler:
    """The saga agent's handler: the transition, the saga's new state, its deadline index entry and,
    when ``measure``, its counts in the windows of ``GET /stats``."""

    def handle(record: Incoming, read: Reader, now: datetime) -> Effects:
        order_id, message = owned_message(record)
        return saga_effects(order_id, message, record, read, now, policy, exactly_once, measure)

    return handle


def saga_effects(
    order_id: str, message: Message, record: Incoming, read: Reader, now: datetime, policy: SagaPolicy,
    exactly_once: bool, measure: bool = True,
) -> Effects:
    """Run the pure transition on the stored saga; keep the deadline index and the counts in step with it.

    The index and the counts are compared with what is stored each time, so a redelivery repairs
    them as it goes.
    """
    topic, partition, position = record.topic, record.partition, record.position
    stored = read(SAGAS, order_id)
    state = SagaState.from_json(stored) if stored is not None else None
    if state is None and isinstance(message, OrderPlaced) and expired(message, now, policy):
        raise ExpiredOrder(message, now, policy.retention)  # it passed ingress just before its saga was forgotten
    new_state, sent = transition(state, message, now, policy)
    if isinstance(message, ForgetSaga) and new_state is None:
        return _forgotten(order_id, state, message, read)
    writes: list[Write] = []
    changed = new_state is not None and new_state is not state
    if new_state is not None and changed:
        new_state = _marked(state, new_state, message, position, now)
        writes.append(Write(SAGAS, order_id, new_state.to_json()))
    elif state is not None and not resends(position, state.last_input, exactly_once):
        sent = []
    measures: list[Measure] = []
    if new_state is not None:
        wanted = deadline_entry(new_state)
        if read(DEADLINES, order_id) != wanted:
            writes.append(Write(DEADLINES, order_id, wanted))
        writes += _expiry_writes(order_id, new_state, message, read, policy)
        if not exactly_once:
            measures = saga_measures(new_state, position)
        elif changed:
            measures = _measures(new_state, placed=_places(state, message), ended=_ends(state, new_state))
        if measure:
            writes += stats.count(read, topic, partition, position, now, measures)
    return Effects(tuple(writes), outputs(sent), tuple(measures) if changed else ())


def _marked(state: SagaState | None, new_state: SagaState, message: Message, position: int, now: datetime) -> SagaState:
    """The new state with the input that made it, and when and by which input the order was placed or ended."""
    marks: dict[str, object] = {"last_input": position}
    if _places(state, message):
        assert isinstance(message, OrderPlaced)
        marks.update(placed_at=message.occurred_at, placed_input=position)
    if _ends(state, new_state):
        marks.update(ended_at=format_time(now), ended_input=position)
    return evolve(new_state, **marks)  # type: ignore[arg-type]


def _places(state: SagaState | None, message: Message) -> bool:
    """Whether the message places the order: an OrderPlaced for a saga not there yet."""
    return state is None and isinstance(message, OrderPlaced)


def _ends(state: SagaState | None, new_state: SagaState) -> bool:
    """Whether the change ends the saga: it reaches its final status now."""
    return new_state.is_terminal and (state is None or not state.is_terminal)


def saga_measures(state: SagaState, position: int) -> list[Measure]:
    """What input ``position`` counts for this saga: the order placed, the saga ended, or nothing.

    Read from the state, not from the change: a redelivery whose saga write survived a crash but
    whose count did not still counts (``stats.count`` skips a bucket that has it already). Under
    exactly_once no such redelivery exists, and a message handed over within the worker has no position
    of its own (``INLINE_OFFSET``): there the change itself says what to count.
    """
    return _measures(state, placed=state.placed_input == position, ended=state.ended_input == position)


def _measures(state: SagaState, placed: bool, ended: bool) -> list[Measure]:
    """The order placed, and the saga ended, as measures of the windows of ``GET /stats``."""
    measures: list[Measure] = []
    if placed:
        measures.append(Placed(parse_time(state.placed_at)))
    if ended:
        ended_at = parse_time(state.ended_at)
        measures.append(Ended(ended_at, state.status, state.reason, state.total_amount,
                              ended_at - parse_time(state.started_at)))
    return measures


def expiry_entry(state: SagaState, policy: SagaPolicy) -> str:
    """The expiry index key of a finished saga: when it is forgotten, then its order id."""
    return f"{format_time(forget_at(state, policy))}|{state.order_id}"


def _expiry_writes(order_id: str, state: SagaState, message: Message, read: Reader, policy: SagaPolicy) -> list[Write]:
    """Keep a finished saga's expiry entry in the index (repaired like the deadline); drop the entry a
    ``ForgetSaga`` came for when the retention changed since."""
    writes: list[Write] = []
    wanted = expiry_entry(state, policy) if state.is_terminal else None
    if wanted is not None and read(EXPIRY, wanted) is None:
        writes.append(Write(EXPIRY, wanted, order_id.encode()))
    if isinstance(message, ForgetSaga) and message.entry != wanted and read(EXPIRY, message.entry) is not None:
        writes.append(Write(EXPIRY, message.entry, None))
    return writes


def _forgotten(order_id: str, state: SagaState | None, message: Message, read: Reader) -> Effects:
    """A saga past its retention, or a ``ForgetSaga`` for one already gone: delete it and its index entry."""
    writes = [Write(SAGAS, order_id, None)] if state is not None else []
    if isinstance(message, ForgetSaga) and read(EXPIRY, message.entry) is not None:
        writes.append(Write(EXPIRY, message.entry, None))
    return Effects(tuple(writes))


def deadline_entry(state: SagaState) -> bytes | None:
    """What the deadline index holds for a saga: its deadline while in progress, nothing once it ended."""
    return None if state.is_terminal else state.deadline.encode()


def stock(exactly_once: bool) -> Handler:
    """The stock agent's handler: one sku's stock, its memory of orders in pages (``models.paged``)."""

    def handle(record: Incoming, read: Reader, now: datetime) -> Effects:
        sku, message = owned_message(record)
        return _entry_effects(STOCK, sku, Stock(sku=sku), STOCK_MEMORY, record, message, read,
                              lambda current: handle_stock(current, message), exactly_once)

    return handle


def wallet(exactly_once: bool) -> Handler:
    """The wallet agent's handler: one customer's wallet, its memory of orders in pages (``models.paged``)."""

    def handle(record: Incoming, read: Reader, now: datetime) -> Effects:
        customer_id, message = owned_message(record)
        return _entry_effects(WALLETS, customer_id, Wallet(customer_id=customer_id), WALLET_MEMORY, record, message,
                              read, lambda current: handle_wallet(current, message, now), exactly_once)

    return handle


Entry = TypeVar("Entry", Stock, Wallet)


def _entry_effects(
    table: str, key: str, blank: Entry, memory: tuple[str, ...], record: Incoming, message: Message, read: Reader,
    apply: Callable[[Entry], tuple[Entry, list[Message]]], exactly_once: bool,
) -> Effects:
    """Apply a message to a stock or wallet entry loaded with its order's page; write what changed through the
    pages. A duplicate changes nothing, and its answer is sent again only if :func:`resends`."""
    order_id = getattr(message, "order_id", None)
    head, current = paged.load(read, table, key, blank, memory, order_id)
    new, sent = apply(current)
    if new is current:
        return Effects(sends=outputs(sent) if resends(record.position, current.last_input, exactly_once) else ())
    writes = paged.store(read, table, key, head, evolve(new, last_input=record.position), blank, memory, order_id)
    return Effects(tuple(writes), outputs(sent))


def customers(record: Incoming, read: Reader, now: datetime) -> Effects:
    """The customer agent's handler: keep the latest registration; a repeat changes nothing."""
    customer_id, message = owned_message(record)
    if not isinstance(message, UserRegistered):
        raise BadMessage(f"customers do not handle {type(message).__name__}")
    value = orjson.dumps({"customer_id": customer_id, "name": message.name, "email": message.email})
    return NOTHING if value == read(CUSTOMERS, customer_id) else Effects((Write(CUSTOMERS, customer_id, value),))


# --- the timeout timer -----------------------------------------------------------------------


def overdue(index: Iterable[tuple[str | bytes, bytes | None]], now: datetime) -> list[str]:
    """Order ids in a deadline index whose deadline has passed."""
    return [
        key.decode() if isinstance(key, bytes) else key
        for key, deadline in index
        if deadline is not None and parse_time(deadline.decode()) <= now
    ]


def timeouts_due(
    index: Iterable[tuple[str | bytes, bytes | None]],
    now: datetime,
    told: Mapping[str, datetime],
    check_interval: timedelta,
) -> tuple[Effects, dict[str, datetime]]:
    """The timer's decision: a ``SagaTimeout`` for each overdue saga not told lately.

    ``told`` is when each overdue saga was last told; the new one comes back. A saga is told again
    only if it is still overdue ``RETELL_INTERVALS`` timer intervals later: its partition may simply
    be behind, and every telling of a timed-out saga re-sends its compensation.
    """
    due, remembered = _not_told_lately(overdue(index, now), now, told, check_interval)
    return Effects(sends=outputs([SagaTimeout(order_id=order_id) for order_id in due])), remembered


def forgets_due(
    entries: Iterable[str | bytes], now: datetime, told: Mapping[str, datetime], check_interval: timedelta,
) -> tuple[Effects, dict[str, datetime]]:
    """The timer's other decision: a ``ForgetSaga`` for each expiry index entry that is due and not told lately."""
    keys = (entry.decode() if isinstance(entry, bytes) else entry for entry in entries)
    late = [key for key in keys if parse_time(key.split("|", 1)[0]) <= now]
    due, remembered = _not_told_lately(late, now, told, check_interval)
    return Effects(sends=outputs([ForgetSaga(order_id=key.split("|", 1)[1], entry=key) for key in due])), remembered


def _not_told_lately(
    late: list[str], now: datetime, told: Mapping[str, datetime], check_interval: timedelta,
) -> tuple[list[str], dict[str, datetime]]:
    """Those of ``late`` not told within ``RETELL_INTERVALS`` timer intervals, and when each late one was told."""
    retell_after = RETELL_INTERVALS * check_interval
    due = [key for key in late if key not in told or now - told[key] >= retell_after]
    remembered = {key: told[key] for key in late if key in told}
    remembered.update(dict.fromkeys(due, now))
    return due, remembered
