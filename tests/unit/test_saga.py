"""models.saga: the order saga as a pure transition function, driven through tables of outcomes."""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from models import paged
from models.commands import (
    ChargeWallet,
    CommitStock,
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
    FundsAdded,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    PaymentRefunded,
    PaymentRequested,
    SagaCompleted,
    SagaEvent,
    SagaFailed,
    SagaStarted,
    SagaStepCompleted,
    SagaTimedOut,
    StockAdded,
    StockLine,
    decode_event,
    derived_event_id,
    format_time,
)
from models.saga import (
    COMPLETED,
    CONFIRMATION,
    FAILED,
    IN_PROGRESS,
    INVENTORY,
    OUT_OF_STOCK,
    PAYMENT,
    PAYMENT_DECLINED,
    STEPS,
    TIMED_OUT,
    TIMEOUT,
    Output,
    SagaPolicy,
    SagaState,
    implied_outputs,
    transition,
)
from models.stock import MEMORY as STOCK_MEMORY
from models.stock import Stock
from models.topics import INVENTORY_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS
from models.wallet import MEMORY as WALLET_MEMORY
from models.wallet import Wallet
from simulation.invariants import check
from simulation.scenario import Config, Input, Scenario
from simulation.simulator import SAGAS, STOCK, WALLETS, simulate

T0 = datetime(2024, 5, 6, 12, 0, 0, tzinfo=UTC)
DEADLINE = T0 + timedelta(minutes=5)
LATE = DEADLINE + timedelta(seconds=30)
ORDER = "o-1"
CUSTOMER = "c-1"
INTERNAL = SagaPolicy()
EXTERNAL = SagaPolicy(payment_mode="external")

# --- factories ---------------------------------------------------------------------------------


def run(
    state: SagaState | None, messages: list[Message], now: datetime, policy: SagaPolicy = INTERNAL
) -> tuple[SagaState | None, list[Output]]:
    """Apply messages in order, gathering what was sent."""
    sent: list[Output] = []
    for message in messages:
        state, outputs = transition(state, message, now, policy)
        sent += outputs
    return state, sent


def placed(
    order_id: str = ORDER,
    lines: tuple[tuple[str, int, str], ...] = (("A", 2, "5.00"), ("B", 1, "10.00")),
    event_id: str = "evt-placed",
    customer_id: str = CUSTOMER,
) -> OrderPlaced:
    """An OrderPlaced; by default A x2 at 5.00 and B x1 at 10.00, total 20.00."""
    items = tuple(OrderLine(sku=sku, quantity=qty, unit_price=Decimal(price)) for sku, qty, price in lines)
    total = sum((line.quantity * line.unit_price for line in items), Decimal("0.00"))
    return OrderPlaced(
        event_id=event_id,
        occurred_at=format_time(T0),
        order_id=order_id,
        customer_id=customer_id,
        items=items,
        total_amount=total,
    )


ONE_LINE = (("A", 3, "2.50"),)


def reserved(sku: str, quantity: int | None = None, order_id: str = ORDER) -> StockReserved:
    qty = quantity if quantity is not None else {"A": 2, "B": 1}.get(sku, 1)
    return StockReserved(order_id=order_id, sku=sku, quantity=qty)


def refused(sku: str, requested: int = 1, available: int = 0, order_id: str = ORDER) -> StockRefused:
    return StockRefused(order_id=order_id, sku=sku, requested=requested, available=available)


def charged(amount: str = "20.00", order_id: str = ORDER) -> PaymentCharged:
    return PaymentCharged(order_id=order_id, amount=Decimal(amount))


def declined(reason: str = "INSUFFICIENT_FUNDS", order_id: str = ORDER) -> PaymentDeclined:
    return PaymentDeclined(order_id=order_id, reason=reason)


def timeout(order_id: str = ORDER) -> SagaTimeout:
    return SagaTimeout(order_id=order_id)


def play(
    messages: list[Message], policy: SagaPolicy = INTERNAL, state: SagaState | None = None
) -> tuple[SagaState | None, list[Message]]:
    """Feed messages one by one; the clock stands at T0 until a SagaTimeout, which comes after the deadline."""
    sent: list[Message] = []
    now = T0
    for message in messages:
        if isinstance(message, SagaTimeout):
            now = LATE
        state, out = transition(state, message, now, policy)
        sent += out
    return state, sent


def names(outputs: list[Message]) -> list[str]:
    return [type(out).__name__ for out in outputs]


def event_ids(outputs: list[Message]) -> set[str]:
    """Ids of the events that tell what happened; a request (PaymentRequested) is not re-told once answered."""
    return {out.event_id for out in outputs if isinstance(out, Event) and not isinstance(out, PaymentRequested)}


def of_type(outputs: list[Message], cls: type) -> list[Any]:
    return [out for out in outputs if type(out) is cls]


def done(state: SagaState | None) -> SagaState:
    assert state is not None
    return state


# --- the table of outcomes ---------------------------------------------------------------------

START = ["SagaStarted", "ReserveStock", "ReserveStock"]
STOCK_OK = ["SagaStepCompleted", "InventoryReserved", "ChargeWallet"]
CONFIRM = ["SagaStepCompleted", "SagaStepCompleted", "CommitStock", "CommitStock", "OrderConfirmed", "SagaCompleted"]
CANCEL_TAIL = ["OrderCancelled", "CustomerNotified", "CompensationCompleted"]


@dataclass
class Case:
    messages: list[Message]
    status: str
    step: str
    steps: dict[str, str]
    reason: str | None
    outputs: list[str]
    released: list[str] = field(default_factory=list)  # skus given back (ReleaseStock), in order
    committed: list[str] = field(default_factory=list)
    refunded: bool = False
    policy: SagaPolicy = SagaPolicy()


CASES = {
    "all reserved and charged": Case(
        [placed(), reserved("A"), reserved("B"), charged()],
        COMPLETED,
        CONFIRMATION,
        {INVENTORY: COMPLETED, PAYMENT: COMPLETED, CONFIRMATION: COMPLETED},
        None,
        START + STOCK_OK + CONFIRM,
        committed=["A", "B"],
    ),
    "all reserved in the other order and charged": Case(
        [placed(), reserved("B"), reserved("A"), charged()],
        COMPLETED,
        CONFIRMATION,
        {INVENTORY: COMPLETED, PAYMENT: COMPLETED, CONFIRMATION: COMPLETED},
        None,
        START + STOCK_OK + CONFIRM,
        committed=["A", "B"],
    ),
    "single line order completes": Case(
        [placed(lines=ONE_LINE), reserved("A", 3), charged("7.50")],
        COMPLETED,
        CONFIRMATION,
        {INVENTORY: COMPLETED, PAYMENT: COMPLETED, CONFIRMATION: COMPLETED},
        None,
        ["SagaStarted", "ReserveStock", *STOCK_OK, *CONFIRM[:2], "CommitStock", "OrderConfirmed", "SagaCompleted"],
        committed=["A"],
    ),
    "one line refused": Case(
        [placed(), reserved("A"), refused("B")],
        FAILED,
        INVENTORY,
        {INVENTORY: FAILED},
        OUT_OF_STOCK,
        START + ["InventoryReservationFailed", "SagaFailed", "ReleaseStock", "InventoryReleased", *CANCEL_TAIL],
        released=["A"],
    ),
    "one line refused before the other is reserved": Case(
        [placed(), refused("B"), reserved("A")],
        FAILED,
        INVENTORY,
        {INVENTORY: FAILED},
        OUT_OF_STOCK,
        START + ["InventoryReservationFailed", "SagaFailed", "ReleaseStock", "InventoryReleased", *CANCEL_TAIL],
        released=["A"],
    ),
    "all lines refused": Case(
        [placed(), refused("A", 2, 1), refused("B")],
        FAILED,
        INVENTORY,
        {INVENTORY: FAILED},
        OUT_OF_STOCK,
        START + ["InventoryReservationFailed", "SagaFailed", *CANCEL_TAIL],
    ),
    "payment declined": Case(
        [placed(), reserved("A"), reserved("B"), declined()],
        FAILED,
        PAYMENT,
        {INVENTORY: COMPLETED, PAYMENT: FAILED},
        PAYMENT_DECLINED,
        START + STOCK_OK + ["SagaFailed", "ReleaseStock", "ReleaseStock", "InventoryReleased", *CANCEL_TAIL],
        released=["A", "B"],
    ),
    "timeout with nothing answered": Case(
        [placed(), timeout()],
        TIMED_OUT,
        INVENTORY,
        {INVENTORY: TIMED_OUT},
        TIMEOUT,
        START + ["SagaTimedOut", *CANCEL_TAIL],
    ),
    "timeout in inventory with one line pending, then a late reservation": Case(
        [placed(), reserved("A"), timeout(), reserved("B")],
        TIMED_OUT,
        INVENTORY,
        {INVENTORY: TIMED_OUT},
        TIMEOUT,
        START
        + ["SagaTimedOut", "ReleaseStock", "InventoryReleased", *CANCEL_TAIL]
        + ["ReleaseStock", "InventoryReleased"],  # the late line is given back too
        released=["A", "B"],
    ),
    "timeout in inventory, then a late refusal": Case(
        [placed(), reserved("A"), timeout(), refused("B")],
        TIMED_OUT,
        INVENTORY,
        {INVENTORY: TIMED_OUT},
        TIMEOUT,
        START + ["SagaTimedOut", "ReleaseStock", "InventoryReleased", *CANCEL_TAIL],
        released=["A"],
    ),
    "timeout in payment, then a late charge": Case(
        [placed(), reserved("A"), reserved("B"), timeout(), charged()],
        TIMED_OUT,
        PAYMENT,
        {INVENTORY: COMPLETED, PAYMENT: TIMED_OUT},
        TIMEOUT,
        START
        + STOCK_OK
        + ["SagaTimedOut", "ReleaseStock", "ReleaseStock", "InventoryReleased", *CANCEL_TAIL]
        + ["RefundWallet"],
        released=["A", "B"],
        refunded=True,
    ),
    "timeout in payment, then a late decline": Case(
        [placed(), reserved("A"), reserved("B"), timeout(), declined()],
        TIMED_OUT,
        PAYMENT,
        {INVENTORY: COMPLETED, PAYMENT: TIMED_OUT},
        TIMEOUT,
        START + STOCK_OK + ["SagaTimedOut", "ReleaseStock", "ReleaseStock", "InventoryReleased", *CANCEL_TAIL],
        released=["A", "B"],
    ),
    "timeout after completion changes nothing": Case(
        [placed(), reserved("A"), reserved("B"), charged(), timeout()],
        COMPLETED,
        CONFIRMATION,
        {INVENTORY: COMPLETED, PAYMENT: COMPLETED, CONFIRMATION: COMPLETED},
        None,
        START + STOCK_OK + CONFIRM,
        committed=["A", "B"],
    ),
    "external: all reserved and charged": Case(
        [placed(), reserved("A"), reserved("B"), charged()],
        COMPLETED,
        CONFIRMATION,
        {INVENTORY: COMPLETED, PAYMENT: COMPLETED, CONFIRMATION: COMPLETED},
        None,
        START + ["SagaStepCompleted", "InventoryReserved", "PaymentRequested"] + CONFIRM,
        committed=["A", "B"],
        policy=EXTERNAL,
    ),
    "external: payment declined": Case(
        [placed(), reserved("A"), reserved("B"), declined("CARD_DECLINED")],
        FAILED,
        PAYMENT,
        {INVENTORY: COMPLETED, PAYMENT: FAILED},
        PAYMENT_DECLINED,
        START
        + ["SagaStepCompleted", "InventoryReserved", "PaymentRequested"]
        + ["SagaFailed", "ReleaseStock", "ReleaseStock", "InventoryReleased", *CANCEL_TAIL],
        released=["A", "B"],
        policy=EXTERNAL,
    ),
    "external: timeout in payment, then a late charge": Case(
        [placed(), reserved("A"), reserved("B"), timeout(), charged()],
        TIMED_OUT,
        PAYMENT,
        {INVENTORY: COMPLETED, PAYMENT: TIMED_OUT},
        TIMEOUT,
        START
        + ["SagaStepCompleted", "InventoryReserved", "PaymentRequested"]
        + ["SagaTimedOut", "ReleaseStock", "ReleaseStock", "InventoryReleased", *CANCEL_TAIL]
        + ["PaymentRefunded"],
        released=["A", "B"],
        refunded=True,
        policy=EXTERNAL,
    ),
}
CASE_PARAMS = [pytest.param(case, id=name) for name, case in CASES.items()]


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_outcome_table(case: Case) -> None:
    state, sent = play(case.messages, case.policy)
    state = done(state)
    assert names(sent) == case.outputs
    assert (state.status, state.step, state.steps, state.reason) == (case.status, case.step, case.steps, case.reason)
    assert [out.sku for out in of_type(sent, ReleaseStock)] == case.released
    assert [out.sku for out in of_type(sent, CommitStock)] == case.committed
    refunds = of_type(sent, RefundWallet) + of_type(sent, PaymentRefunded)
    assert len(refunds) == (1 if case.refunded else 0)
    assert not (case.released and case.committed)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_every_outcome_has_exactly_one_order_result(case: Case) -> None:
    _, sent = play(case.messages, case.policy)
    results = of_type(sent, OrderConfirmed) + of_type(sent, OrderCancelled)
    assert len(results) == 1
    assert isinstance(results[0], OrderConfirmed) == (case.status == COMPLETED)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_replay_sends_the_same_event_ids_as_first_sent(case: Case) -> None:
    state, sent = play(case.messages, case.policy)
    for duplicate in (placed(), placed(event_id="another-delivery")):
        again, replay = transition(state, duplicate, LATE + timedelta(hours=1), case.policy)
        assert again is state, "a duplicate OrderPlaced changes nothing"
        assert event_ids(replay) == event_ids(sent)
        assert len(of_type(replay, OrderConfirmed) + of_type(replay, OrderCancelled)) == 1


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_run_is_transition_applied_in_turn(case: Case) -> None:
    cut = next((i for i, m in enumerate(case.messages) if isinstance(m, SagaTimeout)), len(case.messages))
    state, sent = run(None, case.messages[:cut], T0, case.policy)
    state, rest = run(state, case.messages[cut:], LATE, case.policy)
    assert (state, sent + rest) == play(case.messages, case.policy)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_replayed_events_carry_the_same_body_as_first_sent(case: Case) -> None:
    """An event id names one event: a re-send under the same id must say the same thing."""
    state, sent = play(case.messages, case.policy)
    _, replay = transition(state, placed(), LATE, case.policy)
    first = {out.event_id: out for out in sent if isinstance(out, Event)}
    for out in replay:
        if isinstance(out, Event):
            assert out.body() | {"occurred_at": "-"} == first[out.event_id].body() | {"occurred_at": "-"}


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_state_json_round_trip(case: Case) -> None:
    states: list[SagaState] = []
    state: SagaState | None = None
    for message in case.messages:
        state, _ = transition(state, message, LATE if isinstance(message, SagaTimeout) else T0, case.policy)
        states.append(done(state))
    for each in states:
        again = SagaState.from_json(each.to_json())
        assert again == each
        # and the restored state sends the same things
        assert implied_outputs(again, T0, case.policy) == implied_outputs(each, T0, case.policy)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_every_public_event_output_is_a_valid_contract_event(case: Case) -> None:
    _, sent = play(case.messages, case.policy)
    for out in sent:
        if isinstance(out, Event):
            assert decode_event(out.encode()) == out
            assert out.aggregate_id == (CUSTOMER if isinstance(out, CustomerNotified) else ORDER)


# --- output contents ---------------------------------------------------------------------------


def test_start_state_and_outputs() -> None:
    state, out = transition(None, placed(), T0)
    state = done(state)
    assert state.order_id == ORDER and state.customer_id == CUSTOMER
    assert state.saga_id == derived_event_id(ORDER, "saga")
    assert state.lines == {"A": 2, "B": 1}
    assert state.total_amount == Decimal("20.00")
    assert (state.status, state.step, state.reason) == (IN_PROGRESS, INVENTORY, None)
    assert state.steps == {INVENTORY: IN_PROGRESS}
    assert state.started_at == state.updated_at == "2024-05-06T12:00:00.000Z"
    assert state.deadline == "2024-05-06T12:05:00.000Z"
    assert out == [
        SagaStarted(
            event_id=derived_event_id(ORDER, "SagaStarted", INVENTORY),
            occurred_at="2024-05-06T12:00:00.000Z",
            order_id=ORDER,
            saga_id=state.saga_id,
            step=INVENTORY,
            status=IN_PROGRESS,
        ),
        ReserveStock(order_id=ORDER, sku="A", quantity=2),
        ReserveStock(order_id=ORDER, sku="B", quantity=1),
    ]


def test_policy_timeout_sets_the_deadline() -> None:
    state, _ = transition(None, placed(), T0, SagaPolicy(timeout=timedelta(seconds=10)))
    assert done(state).deadline == "2024-05-06T12:00:10.000Z"


def test_lines_with_the_same_sku_are_merged() -> None:
    order = placed(lines=(("A", 2, "5.00"), ("B", 1, "10.00"), ("A", 3, "4.00")))
    state, out = transition(None, order, T0)
    state = done(state)
    assert state.lines == {"A": 5, "B": 1}
    assert state.total_amount == Decimal("32.00")
    assert of_type(out, ReserveStock) == [
        ReserveStock(order_id=ORDER, sku="A", quantity=5),
        ReserveStock(order_id=ORDER, sku="B", quantity=1),
    ]
    state, out = run(state, [reserved("A", 5), reserved("B", 1)], T0)
    assert of_type(out, InventoryReserved)[0].items == (StockLine("A", 5), StockLine("B", 1))
    assert done(state).step == PAYMENT


def test_completion_outputs() -> None:
    _, sent = play([placed(), reserved("A"), reserved("B"), charged()])
    saga_id = derived_event_id(ORDER, "saga")
    assert of_type(sent, ChargeWallet) == [ChargeWallet(order_id=ORDER, customer_id=CUSTOMER, amount=Decimal("20.00"))]
    assert of_type(sent, InventoryReserved)[0].items == (StockLine("A", 2), StockLine("B", 1))
    confirmed = of_type(sent, OrderConfirmed)[0]
    assert (confirmed.order_id, confirmed.customer_id, confirmed.total_amount) == (ORDER, CUSTOMER, Decimal("20.00"))
    assert confirmed.event_id == derived_event_id(ORDER, "OrderConfirmed")
    assert [(e.step, e.status) for e in of_type(sent, SagaStepCompleted)] == [
        (INVENTORY, COMPLETED),
        (PAYMENT, COMPLETED),
        (CONFIRMATION, COMPLETED),
    ]
    completed = of_type(sent, SagaCompleted)[0]
    assert (completed.saga_id, completed.step, completed.status, completed.reason) == (
        saga_id, CONFIRMATION, COMPLETED, None
    )
    assert all(e.saga_id == saga_id for e in sent if isinstance(e, SagaEvent))


def test_out_of_stock_outputs() -> None:
    state, sent = play([placed(), reserved("A"), refused("B", requested=1, available=0)])
    failed = of_type(sent, InventoryReservationFailed)[0]
    assert failed.failed_items == (FailedLine(sku="B", requested=1, available=0),)
    assert of_type(sent, InventoryReleased)[0].items == (StockLine("A", 2),)
    cancelled = of_type(sent, OrderCancelled)[0]
    assert (cancelled.customer_id, cancelled.reason) == (CUSTOMER, OUT_OF_STOCK)
    saga_failed = of_type(sent, SagaFailed)[0]
    assert (saga_failed.step, saga_failed.status, saga_failed.reason) == (INVENTORY, FAILED, OUT_OF_STOCK)
    compensated = of_type(sent, CompensationCompleted)[0]
    assert (compensated.step, compensated.status, compensated.reason) == (INVENTORY, COMPLETED, None)
    notified = of_type(sent, CustomerNotified)[0]
    assert (notified.customer_id, notified.order_id) == (CUSTOMER, ORDER)
    assert "out of stock" in notified.message and "not charged" in notified.message
    assert done(state).failed_lines == {"B": (1, 0)}
    assert not of_type(sent, ChargeWallet)


def test_all_refused_lists_every_failed_line_sorted() -> None:
    _, sent = play([placed(), refused("B", 1, 0), refused("A", 2, 1)])
    assert of_type(sent, InventoryReservationFailed)[0].failed_items == (
        FailedLine(sku="A", requested=2, available=1),
        FailedLine(sku="B", requested=1, available=0),
    )
    assert not of_type(sent, InventoryReleased)


def test_payment_declined_outputs() -> None:
    _, sent = play([placed(), reserved("A"), reserved("B"), declined()])
    assert of_type(sent, InventoryReleased)[0].items == (StockLine("A", 2), StockLine("B", 1))
    assert of_type(sent, OrderCancelled)[0].reason == PAYMENT_DECLINED
    assert of_type(sent, SagaFailed)[0].step == PAYMENT
    assert "declined" in of_type(sent, CustomerNotified)[0].message


def test_late_reservation_release_has_its_own_event_id() -> None:
    state, sent = play([placed(), reserved("A"), timeout(), reserved("B")])
    releases = of_type(sent, InventoryReleased)
    assert [r.items for r in releases] == [(StockLine("A", 2),), (StockLine("B", 1),)]
    assert releases[0].event_id == derived_event_id(ORDER, "InventoryReleased")
    assert releases[1].event_id == derived_event_id(ORDER, "InventoryReleased", "late", "B")
    assert done(state).line_results == {"A": "RESERVED", "B": "LATE_RESERVED"}


def test_timeout_outputs() -> None:
    state, sent = play([placed(), reserved("A"), timeout()])
    timed_out = of_type(sent, SagaTimedOut)[0]
    assert (timed_out.step, timed_out.status, timed_out.reason) == (INVENTORY, TIMED_OUT, TIMEOUT)
    assert of_type(sent, OrderCancelled)[0].reason == TIMEOUT
    assert done(state).updated_at == format_time(LATE)


def test_late_charge_after_timeout_is_refunded_in_full() -> None:
    state, sent = play([placed(), reserved("A"), reserved("B"), timeout(), charged()])
    assert of_type(sent, RefundWallet) == [RefundWallet(order_id=ORDER, customer_id=CUSTOMER, amount=Decimal("20.00"))]
    assert done(state).payment == "CHARGED"


# --- timeouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("before", [timedelta(0), timedelta(minutes=4, seconds=59, microseconds=999999)])
def test_timeout_before_the_deadline_does_nothing(before: timedelta) -> None:
    state, _ = play([placed(), reserved("A")])
    again, out = transition(state, timeout(), T0 + before)
    assert again is state
    assert out == []


def test_timeout_exactly_at_the_deadline_ends_the_saga() -> None:
    state, _ = play([placed()])
    after, out = transition(state, timeout(), DEADLINE)
    assert done(after).status == TIMED_OUT
    assert "OrderCancelled" in names(out)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_timeout_of_a_finished_saga_changes_nothing(case: Case) -> None:
    """A stale timeout does nothing; a redelivered one (the saga timed out) re-sends, same ids."""
    state, sent = play(case.messages, case.policy)
    again, out = transition(state, timeout(), LATE + timedelta(hours=1), case.policy)
    assert again is state
    if done(state).status == TIMED_OUT:
        assert "OrderCancelled" in names(out) and set(event_ids(out)) <= set(event_ids(sent))
    else:
        assert out == []


# --- duplicates --------------------------------------------------------------------------------


def test_duplicate_order_placed_replays_with_identical_ids_and_no_new_effects() -> None:
    state, first = transition(None, placed(), T0)
    again, replay = transition(state, placed(), T0 + timedelta(seconds=1))
    assert again is state
    assert names(replay) == names(first)
    assert event_ids(replay) == event_ids(first)
    assert of_type(replay, ReserveStock) == of_type(first, ReserveStock)


def test_order_placed_with_the_same_order_id_but_other_content_is_a_duplicate() -> None:
    state, first = transition(None, placed(), T0)
    other = placed(lines=(("Z", 9, "1.00"),), event_id="evt-other")
    again, replay = transition(state, other, T0)
    assert again is state
    assert done(again).lines == {"A": 2, "B": 1}
    assert of_type(replay, ReserveStock) == of_type(first, ReserveStock)


def test_duplicate_stock_reserved_changes_nothing_and_re_asks_only_pending_lines() -> None:
    state, _ = play([placed(), reserved("A")])
    again, out = transition(state, reserved("A"), T0)
    assert again is state
    assert names(out) == ["SagaStarted", "ReserveStock"]
    assert of_type(out, ReserveStock) == [ReserveStock(order_id=ORDER, sku="B", quantity=1)]


def test_duplicate_stock_reserved_in_payment_step_re_sends_the_charge() -> None:
    state, first = play([placed(), reserved("A"), reserved("B")])
    again, out = transition(state, reserved("B"), T0)
    assert again is state
    assert of_type(out, ChargeWallet) == of_type(first, ChargeWallet)
    assert not of_type(out, ReserveStock)
    assert event_ids(out) == event_ids(first)


def test_a_refusal_after_a_reservation_of_the_same_line_is_a_duplicate() -> None:
    state, _ = play([placed(), reserved("A")])
    again, _ = transition(state, refused("A"), T0)
    assert again is state
    assert done(again).line_results == {"A": "RESERVED"}


def test_duplicate_payment_charged_after_completion_re_sends_without_state_change() -> None:
    state, first = play([placed(), reserved("A"), reserved("B"), charged()])
    again, out = transition(state, charged(), T0 + timedelta(minutes=1))
    assert again is state
    assert "OrderConfirmed" in names(out)
    assert event_ids(out) == event_ids(first)
    assert not of_type(out, ReserveStock), "a terminal saga never asks for stock again"
    assert not of_type(out, ChargeWallet), "a terminal saga never asks for money again (no reply loop)"
    assert not of_type(out, ReleaseStock) and not of_type(out, RefundWallet)


def test_a_decline_after_a_charge_is_a_duplicate() -> None:
    state, _ = play([placed(), reserved("A"), reserved("B"), charged()])
    again, out = transition(state, declined(), T0)
    assert again is state
    assert done(again).status == COMPLETED
    assert not of_type(out, OrderCancelled)


@pytest.mark.parametrize(
    "duplicate",
    [placed(), reserved("A"), reserved("B"), refused("B"), charged(), declined()],
    ids=lambda m: type(m).__name__,
)
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_no_requests_are_re_sent_for_a_terminal_saga(case: Case, duplicate: Message) -> None:
    """Whatever reply comes after the end (a duplicate or a late one), no new request goes out."""
    state, first = play(case.messages, case.policy)
    again, out = transition(state, duplicate, LATE + timedelta(hours=1), case.policy)
    assert done(again).status == done(state).status
    assert not of_type(out, ReserveStock)
    assert not of_type(out, ChargeWallet)
    if again is state and out:  # a duplicate: everything is re-told under the ids first sent
        assert event_ids(out) == event_ids(first)
        assert len(of_type(out, OrderConfirmed) + of_type(out, OrderCancelled)) == 1
    else:  # a late answer: only its undoing is new
        assert set(names(out)) <= {"ReleaseStock", "InventoryReleased", "RefundWallet", "PaymentRefunded"} | set(
            names(first)
        )


def test_duplicate_timeout_after_timing_out_re_sends_the_compensation() -> None:
    """The first timeout's outputs may have died unsent with a crash; the redelivery sends them."""
    state, first = play([placed(), reserved("A"), timeout()])
    again, out = transition(state, timeout(), LATE + timedelta(minutes=1))
    assert again is state
    assert of_type(out, ReleaseStock) == [ReleaseStock(order_id=ORDER, sku="A")]
    assert set(event_ids(out)) == set(event_ids(first))


def test_duplicate_late_reservation_re_sends_the_same_release() -> None:
    state, first = play([placed(), reserved("A"), timeout(), reserved("B")])
    again, out = transition(state, reserved("B"), LATE)
    assert again is state
    assert of_type(out, ReleaseStock) == [ReleaseStock(order_id=ORDER, sku="A"), ReleaseStock(order_id=ORDER, sku="B")]
    assert event_ids(out) == event_ids(first)


def test_reply_for_a_sku_not_in_the_order_is_ignored() -> None:
    state, _ = play([placed()])
    again, out = transition(state, reserved("Z"), T0)
    assert again is state
    assert out == []


# --- replies for unknown sagas -----------------------------------------------------------------


def test_stock_reserved_for_an_unknown_saga_is_released() -> None:
    state, out = transition(None, reserved("A", order_id="ghost"), T0)
    assert state is None
    assert out == [ReleaseStock(order_id="ghost", sku="A")]


@pytest.mark.parametrize(
    "message",
    [refused("A", order_id="ghost"), charged(order_id="ghost"), declined(order_id="ghost"), timeout("ghost")],
    ids=lambda m: type(m).__name__,
)
def test_other_replies_for_an_unknown_saga_do_nothing(message: Message) -> None:
    assert transition(None, message, T0) == (None, [])


# --- external payment mode ---------------------------------------------------------------------


def test_external_mode_requests_payment_with_an_event() -> None:
    _, sent = play([placed(), reserved("A"), reserved("B")], EXTERNAL)
    assert not of_type(sent, ChargeWallet)
    assert of_type(sent, PaymentRequested) == [
        PaymentRequested(
            event_id=derived_event_id(ORDER, "PaymentRequested"),
            occurred_at=format_time(T0),
            order_id=ORDER,
            customer_id=CUSTOMER,
            amount=Decimal("20.00"),
        )
    ]


def test_external_mode_refunds_with_an_event() -> None:
    _, sent = play([placed(), reserved("A"), reserved("B"), timeout(), charged()], EXTERNAL)
    assert not of_type(sent, RefundWallet)
    refund = of_type(sent, PaymentRefunded)
    assert len(refund) == 1
    assert (refund[0].event_id, refund[0].customer_id, refund[0].amount) == (
        derived_event_id(ORDER, "PaymentRefunded"), CUSTOMER, Decimal("20.00")
    )


def test_external_mode_does_not_request_payment_again_once_answered() -> None:
    """The gateway's answer to a re-sent PaymentRequested would come back as a duplicate, which would
    re-send PaymentRequested again: the same reply loop the internal mode avoids for ChargeWallet."""
    state, _ = play([placed(), reserved("A"), reserved("B"), charged()], EXTERNAL)
    again, out = transition(state, charged(), T0, EXTERNAL)
    assert again is state
    assert not of_type(out, PaymentRequested)


def test_external_mode_does_not_request_payment_for_a_timed_out_saga() -> None:
    state, _ = play([placed(), reserved("A"), reserved("B"), timeout()], EXTERNAL)
    _, out = transition(state, placed(), LATE, EXTERNAL)
    assert not of_type(out, PaymentRequested), "asking a gateway to charge a cancelled order"


def test_external_gateway_answering_every_request_does_not_loop() -> None:
    """A gateway that is idempotent the way the wallet is: every PaymentRequested gets its (same) answer."""
    state, pending = play([placed(), reserved("A"), reserved("B")], EXTERNAL)
    requests = [out for out in pending if isinstance(out, PaymentRequested)]
    queue = deque(requests + requests)  # at-least-once: the gateway sees the request twice
    deliveries = 0
    while queue and deliveries < 20:
        request = queue.popleft()
        deliveries += 1
        state, out = transition(state, charged(str(request.amount), request.order_id), T0, EXTERNAL)
        queue.extend(o for o in out if isinstance(o, PaymentRequested))
    assert done(state).status == COMPLETED
    assert not queue, f"still requesting payment after {deliveries} answers"


# --- view and state ----------------------------------------------------------------------------


def test_view_has_the_contract_fields() -> None:
    state, _ = play([placed(), reserved("A"), reserved("B"), declined()])
    view = done(state).view()
    contract = {"order_id", "saga_id", "status", "step", "steps", "reason", "started_at", "updated_at"}
    assert contract <= set(view)
    assert view["order_id"] == ORDER
    assert view["saga_id"] == derived_event_id(ORDER, "saga")
    assert view["status"] == FAILED
    assert view["step"] == PAYMENT
    assert view["steps"] == {INVENTORY: COMPLETED, PAYMENT: FAILED}
    assert view["reason"] == PAYMENT_DECLINED
    assert view["started_at"] == "2024-05-06T12:00:00.000Z"
    assert view["updated_at"] == "2024-05-06T12:00:00.000Z"
    assert view["total_amount"] == "20.00"


def test_view_of_a_running_saga_has_a_null_reason() -> None:
    state, _ = play([placed()])
    view = done(state).view()
    assert view["reason"] is None and view["status"] == IN_PROGRESS and view["steps"] == {INVENTORY: IN_PROGRESS}


def test_view_steps_is_a_copy() -> None:
    state = done(play([placed()])[0])
    state.view()["steps"]["X"] = "Y"
    assert "X" not in state.steps


def test_updated_at_follows_the_last_change() -> None:
    state, _ = transition(None, placed(), T0)
    later = T0 + timedelta(seconds=42)
    state, _ = transition(state, reserved("A"), later)
    assert done(state).updated_at == format_time(later)
    assert done(state).started_at == format_time(T0)


def test_terminal_flag() -> None:
    assert not done(play([placed()])[0]).is_terminal
    for case in CASES.values():
        assert done(play(case.messages, case.policy)[0]).is_terminal


def test_steps_are_in_contract_order() -> None:
    assert STEPS == ("INVENTORY_RESERVATION", "PAYMENT_PROCESSING", "ORDER_CONFIRMATION")


def test_state_json_keeps_money_as_a_string() -> None:
    raw = done(play([placed()])[0]).to_json()
    assert b'"total_amount":"20.00"' in raw


def test_state_is_immutable() -> None:
    state = done(play([placed()])[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.status = COMPLETED  # type: ignore[misc]


# --- random interleavings ----------------------------------------------------------------------


def test_random_reply_sequences_end_in_exactly_one_result() -> None:
    """Any mix of answers, duplicates and timeouts: one result, stable ids, nothing committed and released."""
    rng = random.Random(7)
    for _ in range(400):
        policy = rng.choice([SagaPolicy(), EXTERNAL])
        pool: list[Message] = [
            rng.choice([reserved("A"), refused("A", 2, 1)]),
            rng.choice([reserved("B"), refused("B")]),
            rng.choice([charged(), declined()]),
            timeout(),
            placed(),
        ]
        messages: list[Message] = [placed()] + [rng.choice(pool) for _ in range(rng.randint(0, 10))]
        state, sent = play(messages, policy)
        if not done(state).is_terminal:
            state, out = transition(state, timeout(), LATE, policy)
            sent += out
        state = done(state)
        results = {(type(o).__name__, o.event_id) for o in sent if isinstance(o, (OrderConfirmed, OrderCancelled))}
        assert len(results) == 1, (messages, names(sent))
        assert (next(iter(results))[0] == "OrderConfirmed") == (state.status == COMPLETED)
        released = {o.sku for o in of_type(sent, ReleaseStock)}
        committed = {o.sku for o in of_type(sent, CommitStock)}
        assert not released & committed
        reserved_lines = {sku for sku, r in state.line_results.items() if r in ("RESERVED", "LATE_RESERVED")}
        if state.status == COMPLETED:
            assert committed == {"A", "B"} and not released
        else:
            assert released == reserved_lines, (messages, names(sent))
            refunds = set(of_type(sent, RefundWallet)) | {e.event_id for e in of_type(sent, PaymentRefunded)}
            assert len(refunds) == (1 if state.payment == "CHARGED" else 0)  # re-sends are the same refund
        _, replay = transition(state, placed(), LATE, policy)
        assert event_ids(replay) == event_ids(sent)


# --- the saga wired to real stock and wallets --------------------------------------------------
# The whole topology runs in the simulator of tests/simulation: the ingress, the saga, stock and
# wallet agents with the handlers the real agents call, the timer, an external gateway, over
# partitions, with worker crashes (tables restored from changelogs, redelivery from the last
# commit), duplicated sends, stalled consumers and clock jumps that make sagas time out.


def small_world(rng: random.Random, policy: SagaPolicy) -> tuple[Scenario, dict[str, int], dict[str, Decimal]]:
    """Two skus and two customers with little stock and money, a few orders, some sent twice."""
    initial_stock = {"A": rng.randint(0, 6), "B": rng.randint(0, 4)}
    initial_funds = {"c-1": Decimal(rng.randint(0, 60)), "c-2": Decimal(rng.randint(0, 60))}
    inputs: list[Input] = []
    for sku, qty in initial_stock.items():
        if qty:
            stock_added = StockAdded(f"stock-{sku}", format_time(T0), sku, qty)
            inputs.append(Input(0.0, INVENTORY_EVENTS, sku, stock_added.body(), f"stock:{sku}"))
    for customer, amount in initial_funds.items():
        if amount:
            funds_added = FundsAdded(f"funds-{customer}", format_time(T0), customer, amount)
            inputs.append(Input(0.0, PAYMENT_EVENTS, customer, funds_added.body(), f"funds:{customer}"))
    at = 0.0
    for n in range(1, rng.randint(2, 6)):
        lines = [("A", rng.randint(1, 3), "5.00"), ("B", rng.randint(1, 2), "10.00")]
        chosen = tuple(rng.sample(lines, rng.randint(1, 2)))
        order = placed(f"o-{n}", chosen, f"evt-{n}", rng.choice(["c-1", "c-2"]))
        at += rng.uniform(0, 2)
        # an external gateway answers every request, the same way each time
        answer = {"answer": "pay" if n % 3 else "decline", "delay": rng.uniform(0, 3), "twice": rng.random() < 0.2}
        gateway = answer if policy.payment_mode == "external" else None
        inputs.append(Input(at, ORDER_EVENTS, order.order_id, order.body(), f"order:{order.order_id}", gateway))
        if rng.random() < 0.3:  # the client sent it twice
            inputs.append(Input(at + rng.uniform(0, 1), ORDER_EVENTS, order.order_id, order.body(), f"order:{n}"))
    config = Config(
        payment_mode=policy.payment_mode, partitions=2, public_partitions=2, workers=2, timeout_s=60.0,
        check_interval_s=10.0, step_s=0.05, commit_interval_s=0.5, crash_p=0.08, dup_p=0.1,
        stall_p=rng.choice([0.0, 0.02]), jump_p=rng.choice([0.0, 0.01]),
    )
    inputs.sort(key=lambda each: each.at)
    return Scenario(rng.randrange(2**32), config, tuple(inputs)), initial_stock, initial_funds


@pytest.mark.parametrize("policy", [SagaPolicy(), EXTERNAL], ids=["internal", "external"])
def test_simulated_system_keeps_every_guarantee(policy: SagaPolicy) -> None:
    rng = random.Random(99)
    for round_ in range(60):
        scenario, initial_stock, initial_funds = small_world(rng, policy)
        result = simulate(scenario)
        assert not result.problems, f"round {round_}: {result.problems}"  # e.g. messages keep coming (a reply loop)
        assert check(result) == [], f"round {round_}"
        orders = {o.key: decode_event(o.value) for o in reversed(scenario.inputs) if o.topic == ORDER_EVENTS}
        sagas = {o: SagaState.from_json(raw) for o, raw in result.tables[SAGAS].items()}
        outcome: dict[str, set[tuple[str, str]]] = {o: set() for o in orders}
        for record in result.topics[ORDER_EVENTS].records():
            event = decode_event(record.value)
            if isinstance(event, (OrderConfirmed, OrderCancelled)):
                outcome[event.order_id].add((type(event).__name__, event.event_id))
        confirmed = {o for o, results in outcome.items() if {name for name, _ in results} == {"OrderConfirmed"}}
        for order_id, results in outcome.items():
            assert len(results) == 1, f"round {round_}: {order_id} ended with {results}"
            assert sagas[order_id].is_terminal
        stocks = paged.whole(result.tables[STOCK].items(), Stock, STOCK_MEMORY)
        wallets = paged.whole(result.tables[WALLETS].items(), Wallet, WALLET_MEMORY)
        for sku in ("A", "B"):
            stock = stocks.get(sku, Stock(sku=sku))
            sold = sum(qty for o in confirmed for s, qty in sagas[o].lines.items() if s == sku)
            assert stock.holds == {}, f"round {round_}: {sku} still holds {stock.holds}"
            assert stock.available == initial_stock[sku] - sold, f"round {round_}: {sku}"
        if policy.payment_mode == "internal":
            for customer in ("c-1", "c-2"):
                wallet = wallets.get(customer, Wallet(customer_id=customer))
                spent = sum(
                    (sagas[o].total_amount for o in confirmed if sagas[o].customer_id == customer), Decimal("0")
                )
                assert wallet.balance == initial_funds[customer] - spent, f"round {round_}: {customer}"
                for order_id in confirmed:
                    if sagas[order_id].customer_id == customer:
                        assert order_id in wallet.charges and order_id not in wallet.refunds
