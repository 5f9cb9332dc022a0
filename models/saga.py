"""The order saga as a pure function: ``transition(state, message, now) -> (state, outputs)``.

Transitions only change the state. What the saga sends follows from the state alone
(:func:`implied_outputs`), so a step sends exactly what its state change implies, and a
duplicate message re-sends everything implied, with the same ids, instead of nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from models.commands import (
    ChargeWallet,
    CommitStock,
    ForgetSaga,
    Message,
    PaymentCharged,
    PaymentDeclined,
    RefundWallet,
    ReleaseStock,
    ReserveStock,
    SagaTimeout,
    StockRefused,
    StockReserved,
)
from models.events import (
    CompensationCompleted,
    CustomerNotified,
    Event,
    FailedLine,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    PaymentRefunded,
    PaymentRequested,
    SagaCompleted,
    SagaEvent,
    SagaFailed,
    SagaStarted,
    SagaStepCompleted,
    SagaTimedOut,
    StockLine,
    derived_event_id,
    format_time,
    parse_time,
)
from models.evolve import evolve
from models.money import format_money, parse_money

INVENTORY = "INVENTORY_RESERVATION"
PAYMENT = "PAYMENT_PROCESSING"
CONFIRMATION = "ORDER_CONFIRMATION"
STEPS = (INVENTORY, PAYMENT, CONFIRMATION)

IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
TIMED_OUT = "TIMED_OUT"
TERMINAL = (COMPLETED, FAILED, TIMED_OUT)

RESERVED = "RESERVED"
REFUSED = "REFUSED"
LATE_RESERVED = "LATE_RESERVED"

CHARGED = "CHARGED"
DECLINED = "DECLINED"

OUT_OF_STOCK = "OUT_OF_STOCK"
PAYMENT_DECLINED = "PAYMENT_DECLINED"
TIMEOUT = "TIMEOUT"

Output = Message

#: how long a finished saga is kept unless the settings say otherwise (Temporal keeps closed workflows too)
DEFAULT_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class SagaPolicy:
    """What the saga needs to know from the settings."""

    payment_mode: str = "internal"
    timeout: timedelta = timedelta(minutes=5)
    #: how long a finished saga is kept (``forget_at``)
    retention: timedelta = DEFAULT_RETENTION


@dataclass(frozen=True)
class SagaState:
    """Everything known about one order's saga; stored as JSON by order id."""

    order_id: str
    saga_id: str
    customer_id: str
    lines: dict[str, int]
    total_amount: Decimal
    status: str
    step: str
    steps: dict[str, str]
    started_at: str
    updated_at: str
    deadline: str
    reason: str | None = None
    line_results: dict[str, str] = field(default_factory=dict)
    failed_lines: dict[str, tuple[int, int]] = field(default_factory=dict)
    payment: str | None = None
    #: position of the input that last changed this saga (``Incoming.position``): a duplicate at or
    #: before it is a redelivery
    last_input: int = -1
    #: the order's ``occurred_at``, and the input that placed it: what ``GET /stats`` counts it by
    placed_at: str = ""
    placed_input: int = -1
    #: when the saga reached its final status, and the input that ended it
    ended_at: str = ""
    ended_input: int = -1

    @property
    def is_terminal(self) -> bool:
        """The saga has its final status; only late replies still matter."""
        return self.status in TERMINAL

    def to_json(self) -> bytes:
        """The table value."""
        return orjson.dumps(self, default=_money_json)

    @classmethod
    def from_json(cls, raw: bytes) -> SagaState:
        """Read a table value written by :meth:`to_json`."""
        body: dict[str, Any] = orjson.loads(raw)
        body["total_amount"] = parse_money(body["total_amount"])
        body["failed_lines"] = {sku: tuple(pair) for sku, pair in body["failed_lines"].items()}
        return cls(**body)

    def view(self) -> dict[str, Any]:
        """What ``GET /orders/{id}`` shows."""
        return {
            "order_id": self.order_id,
            "saga_id": self.saga_id,
            "customer_id": self.customer_id,
            "status": self.status,
            "step": self.step,
            "steps": dict(self.steps),
            "reason": self.reason,
            "total_amount": format_money(self.total_amount),
            "started_at": self.started_at,
            "updated_at": self.updated_at,
        }


def _money_json(value: object) -> str:
    """orjson's fallback for the one type it does not write itself."""
    if isinstance(value, Decimal):
        return format_money(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def forget_at(state: SagaState, policy: SagaPolicy) -> datetime:
    """When a finished saga is removed: its retention after it ended, and after its order was placed, so a
    copy of the order that comes later is old enough to be refused (``expired``)."""
    latest = parse_time(state.ended_at or state.updated_at)
    if state.placed_at:
        latest = max(latest, parse_time(state.placed_at))
    return latest + policy.retention


def expired(order: OrderPlaced, now: datetime, policy: SagaPolicy) -> bool:
    """Whether an order was placed longer ago than a finished saga is kept: it may repeat a forgotten one."""
    return now - parse_time(order.occurred_at) >= policy.retention


def transition(
    state: SagaState | None, message: Message, now: datetime, policy: SagaPolicy = SagaPolicy()
) -> tuple[SagaState | None, list[Output]]:
    """Apply one message to one saga; return the new state (None once forgotten) and what to send."""
    if isinstance(message, ForgetSaga):
        gone = state is not None and state.is_terminal and now >= forget_at(state, policy)
        return (None if gone else state), []
    new_state = _apply(state, message, now, policy)
    if new_state is state:
        if state is not None and _is_duplicate(state, message):
            return state, implied_outputs(state, now, policy)
        return state, _orphan_outputs(state, message)
    assert new_state is not None, "only a missing saga stays missing"
    before = {_identity(out) for out in implied_outputs(state, now, policy)} if state else set()
    return new_state, [out for out in implied_outputs(new_state, now, policy) if _identity(out) not in before]


def _apply(state: SagaState | None, message: Message, now: datetime, policy: SagaPolicy) -> SagaState | None:
    """The state change alone; returns ``state`` itself when nothing changes."""
    if isinstance(message, OrderPlaced):
        return _start(message, now, policy) if state is None else state
    if state is None:
        return None
    if isinstance(message, (StockReserved, StockRefused)):
        return _apply_line(state, message, now)
    if isinstance(message, (PaymentCharged, PaymentDeclined)):
        return _apply_payment(state, message, now)
    if isinstance(message, SagaTimeout):
        return _apply_timeout(state, now)
    return state


def _start(order: OrderPlaced, now: datetime, policy: SagaPolicy) -> SagaState:
    """A new saga in its first step; lines of the same sku are merged."""
    lines: dict[str, int] = {}
    for line in order.items:
        lines[line.sku] = lines.get(line.sku, 0) + line.quantity
    stamp = format_time(now)
    return SagaState(
        order_id=order.order_id,
        saga_id=derived_event_id(order.order_id, "saga"),
        customer_id=order.customer_id,
        lines=lines,
        total_amount=order.total_amount,
        status=IN_PROGRESS,
        step=INVENTORY,
        steps={INVENTORY: IN_PROGRESS},
        started_at=stamp,
        updated_at=stamp,
        deadline=format_time(now + policy.timeout),
    )


def _apply_line(state: SagaState, reply: StockReserved | StockRefused, now: datetime) -> SagaState:
    """Record one line's answer; once all lines answered, move on or fail."""
    if reply.sku not in state.lines or reply.sku in state.line_results:
        return state
    stamp = format_time(now)
    if state.is_terminal:
        if isinstance(reply, StockRefused):
            return evolve(state, line_results={**state.line_results, reply.sku: REFUSED})
        return evolve(state, line_results={**state.line_results, reply.sku: LATE_RESERVED})
    results = {**state.line_results, reply.sku: RESERVED if isinstance(reply, StockReserved) else REFUSED}
    failed = dict(state.failed_lines)
    if isinstance(reply, StockRefused):
        failed[reply.sku] = (reply.requested, reply.available)
    state = evolve(state, line_results=results, failed_lines=failed, updated_at=stamp)
    if len(results) < len(state.lines):
        return state
    if failed:
        return _fail(state, INVENTORY, FAILED, OUT_OF_STOCK)
    return _advance(state, INVENTORY, PAYMENT)


def _apply_payment(state: SagaState, reply: PaymentCharged | PaymentDeclined, now: datetime) -> SagaState:
    """Record the payment's answer; confirm the order or fail the saga."""
    if state.payment is not None:
        return state
    outcome = CHARGED if isinstance(reply, PaymentCharged) else DECLINED
    state = evolve(state, payment=outcome, updated_at=format_time(now))
    if state.is_terminal or state.step != PAYMENT:
        return state
    if outcome == DECLINED:
        return _fail(state, PAYMENT, FAILED, PAYMENT_DECLINED)
    confirmed = _advance(state, PAYMENT, CONFIRMATION)
    return evolve(confirmed, status=COMPLETED, steps={**confirmed.steps, CONFIRMATION: COMPLETED})


def _apply_timeout(state: SagaState, now: datetime) -> SagaState:
    """End a saga that is still waiting after its deadline."""
    if state.is_terminal or now < parse_time(state.deadline):
        return state
    return _fail(evolve(state, updated_at=format_time(now)), state.step, TIMED_OUT, TIMEOUT)


def _advance(state: SagaState, done: str, following: str) -> SagaState:
    """Mark ``done`` completed and start ``following``."""
    return evolve(state, step=following, steps={**state.steps, done: COMPLETED, following: IN_PROGRESS})


def _fail(state: SagaState, step: str, status: str, reason: str) -> SagaState:
    """End the saga in ``status`` at ``step``; compensation follows from the state."""
    return evolve(state, status=status, reason=reason, steps={**state.steps, step: status})


def _is_duplicate(state: SagaState, message: Message) -> bool:
    """The message's effect is already in the state: a redelivery or a re-sent reply."""
    if isinstance(message, OrderPlaced):
        return True
    if isinstance(message, (StockReserved, StockRefused)):
        return message.sku in state.line_results
    if isinstance(message, (PaymentCharged, PaymentDeclined)):
        return state.payment is not None
    if isinstance(message, SagaTimeout):
        return state.status == TIMED_OUT
    return False


def _orphan_outputs(state: SagaState | None, message: Message) -> list[Output]:
    """Undo what a reply for an unknown saga did, so nothing is held for nobody."""
    if state is None and isinstance(message, StockReserved):
        return [ReleaseStock(order_id=message.order_id, sku=message.sku)]
    return []


def implied_outputs(state: SagaState, now: datetime, policy: SagaPolicy = SagaPolicy()) -> list[Output]:
    """Every message this state implies was sent, requests only while still awaited."""
    out: list[Output] = [_saga_event(SagaStarted, state, now, INVENTORY, IN_PROGRESS)]
    awaiting = not state.is_terminal
    if awaiting and state.step == INVENTORY:
        out += [
            ReserveStock(order_id=state.order_id, sku=sku, quantity=qty)
            for sku, qty in state.lines.items()
            if sku not in state.line_results
        ]
    out += [
        _saga_event(SagaStepCompleted, state, now, step, COMPLETED)
        for step in STEPS
        if state.steps.get(step) == COMPLETED
    ]
    if state.steps.get(INVENTORY) == COMPLETED:
        out.append(_event(InventoryReserved, state, now, items=_stock_lines(state, state.lines)))
    if state.failed_lines and state.is_terminal:
        failed = tuple(
            FailedLine(sku=sku, requested=requested, available=available)
            for sku, (requested, available) in sorted(state.failed_lines.items())
        )
        out.append(_event(InventoryReservationFailed, state, now, failed_items=failed))
    if state.step == PAYMENT or state.payment is not None:
        out += _payment_request(state, now, policy, awaiting)
    if state.status == COMPLETED:
        out += [CommitStock(order_id=state.order_id, sku=sku) for sku in state.lines]
        out.append(_event(OrderConfirmed, state, now, customer_id=state.customer_id, total_amount=state.total_amount))
        out.append(_saga_event(SagaCompleted, state, now, CONFIRMATION, COMPLETED))
    elif state.is_terminal:
        out += _compensation(state, now, policy)
    out += _late_releases(state, now)
    return out


def _payment_request(state: SagaState, now: datetime, policy: SagaPolicy, awaiting: bool) -> list[Output]:
    """Ask for the money while the answer is awaited: a wallet command, or the gateway's event."""
    if not awaiting or state.payment is not None:
        return []
    if policy.payment_mode == "external":
        return [_event(PaymentRequested, state, now, customer_id=state.customer_id, amount=state.total_amount)]
    return [ChargeWallet(order_id=state.order_id, customer_id=state.customer_id, amount=state.total_amount)]


def _compensation(state: SagaState, now: datetime, policy: SagaPolicy) -> list[Output]:
    """Undo in reverse: refund, release stock, cancel, notify; then say it is done."""
    failure = SagaTimedOut if state.status == TIMED_OUT else SagaFailed
    out: list[Output] = [_saga_event(failure, state, now, state.step, state.status)]
    reserved = {sku: state.lines[sku] for sku, result in state.line_results.items() if result == RESERVED}
    if state.payment == CHARGED:
        out.append(_refund(state, now, policy))
    out += [ReleaseStock(order_id=state.order_id, sku=sku) for sku in reserved]
    if reserved:
        out.append(_event(InventoryReleased, state, now, items=_stock_lines(state, reserved)))
    out.append(_event(OrderCancelled, state, now, customer_id=state.customer_id, reason=state.reason))
    out.append(
        CustomerNotified(
            event_id=derived_event_id(state.order_id, "CustomerNotified"),
            occurred_at=format_time(now),
            customer_id=state.customer_id,
            order_id=state.order_id,
            message=_CANCEL_MESSAGES.get(state.reason or "", "Your order was cancelled."),
        )
    )
    out.append(_saga_event(CompensationCompleted, state, now, state.step, COMPLETED))
    return out


def _late_releases(state: SagaState, now: datetime) -> list[Output]:
    """Give back lines held after the saga ended; a late charge is refunded by the compensation."""
    out: list[Output] = []
    for sku, result in state.line_results.items():
        if result == LATE_RESERVED:
            out.append(ReleaseStock(order_id=state.order_id, sku=sku))
            out.append(
                InventoryReleased(
                    event_id=derived_event_id(state.order_id, "InventoryReleased", "late", sku),
                    occurred_at=format_time(now),
                    order_id=state.order_id,
                    items=(StockLine(sku=sku, quantity=state.lines[sku]),),
                )
            )
    return out


def _refund(state: SagaState, now: datetime, policy: SagaPolicy) -> Output:
    """Give the charge back: a wallet command, or the gateway's refund event."""
    if policy.payment_mode == "external":
        return _event(PaymentRefunded, state, now, customer_id=state.customer_id, amount=state.total_amount)
    return RefundWallet(order_id=state.order_id, customer_id=state.customer_id, amount=state.total_amount)


_CANCEL_MESSAGES = {
    OUT_OF_STOCK: "Your order was cancelled: some items are out of stock. You were not charged.",
    PAYMENT_DECLINED: "Your order was cancelled: the payment was declined.",
    TIMEOUT: "Your order was cancelled: it took too long to process. Anything charged is refunded.",
}


def _stock_lines(state: SagaState, lines: dict[str, int]) -> tuple[StockLine, ...]:
    """Lines of the order as stock lines, in a stable order."""
    return tuple(StockLine(sku=sku, quantity=qty) for sku, qty in sorted(lines.items()))


def _event(cls: type[Any], state: SagaState, now: datetime, **body: Any) -> Event:
    """A public event about this order, its id derived from the order and its type."""
    return cls(
        event_id=derived_event_id(state.order_id, cls.__name__),
        occurred_at=format_time(now),
        order_id=state.order_id,
        **body,
    )


def _saga_event(cls: type[SagaEvent], state: SagaState, now: datetime, step: str, status: str) -> SagaEvent:
    """A saga progress event, one per (type, step)."""
    return cls(
        event_id=derived_event_id(state.order_id, cls.__name__, step),
        occurred_at=format_time(now),
        order_id=state.order_id,
        saga_id=state.saga_id,
        step=step,
        status=status,
        reason=state.reason if cls in (SagaFailed, SagaTimedOut) else None,
    )


def _identity(out: Output) -> str:
    """What makes two outputs the same message."""
    return out.event_id if isinstance(out, Event) else out.output_id

