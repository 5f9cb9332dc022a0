"""Properties of the pure domain, for any delivery order hypothesis can think of.

One order's saga is driven by a small world that answers its requests the way stock and a wallet
(or a gateway) would, each the same way every time: hypothesis then picks which answer comes
next, which come twice, when the clock passes the deadline and when the timer fires, and which
answers only come after the end. Whatever it picks, the saga ends in exactly one terminal state,
its compensations undo exactly what was done, and the same input gives the same outputs and ids.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from models.effects import Incoming
from models.events import (
    Event,
    FundsAdded,
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    PaymentRefunded,
    PaymentRequested,
    StockAdded,
    format_time,
)
from models.handlers import SAGAS, saga_effects
from models.saga import COMPLETED, TERMINAL, SagaPolicy, SagaState, transition
from models.stock import COMMITTED, Stock, handle_stock
from models.wallet import Wallet, handle_wallet

T0 = datetime(2024, 5, 6, 12, 0, 0, tzinfo=UTC)
ORDER, CUSTOMER = "o-1", "c-1"
PRICES = ["1.00", "2.50"]
PROPERTIES = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow])

# --- one order in a world that answers ---------------------------------------------------------


@st.composite
def orders(draw: st.DrawFn) -> OrderPlaced:
    """An order of one to three lines of different skus."""
    skus = draw(st.lists(st.sampled_from(["A", "B", "C"]), min_size=1, max_size=3, unique=True))
    lines = tuple(
        OrderLine(sku=sku, quantity=draw(st.integers(1, 3)), unit_price=Decimal(draw(st.sampled_from(PRICES))))
        for sku in skus
    )
    total = sum((line.quantity * line.unit_price for line in lines), Decimal("0.00"))
    return OrderPlaced("evt-placed", format_time(T0), ORDER, CUSTOMER, lines, total)


@dataclass
class World:
    """Stock and payment that answer every request for this order, each the same way every time."""

    order: OrderPlaced
    policy: SagaPolicy
    in_stock: dict[str, bool]
    pays: bool | None  # None: the payment is never answered
    answers: list[Message] = field(default_factory=list)  # answers sent, each deliverable (again)
    held: set[str] = field(default_factory=set)  # skus the stock holds for the order
    charged: bool = False  # the money was taken

    def answer(self, outputs: list[Message]) -> None:
        """What stock and payment do with the saga's requests (a repeated request gets the same answer)."""
        for out in outputs:
            if isinstance(out, ReserveStock):
                if self.in_stock[out.sku]:
                    self.held.add(out.sku)
                    self.answers.append(StockReserved(order_id=ORDER, sku=out.sku, quantity=out.quantity))
                else:
                    self.answers.append(StockRefused(order_id=ORDER, sku=out.sku, requested=out.quantity, available=0))
            elif isinstance(out, (ChargeWallet, PaymentRequested)) and self.pays is not None:
                self.charged = self.charged or self.pays
                reply = PaymentCharged(ORDER, self.order.total_amount) if self.pays else PaymentDeclined(ORDER, "NO")
                self.answers.append(reply)


@dataclass
class Run:
    """Every message the saga got, at its time, and what it sent back."""

    state: SagaState | None = None
    fed: list[tuple[Message, datetime]] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    steps: list[tuple[str, list[Message]]] = field(default_factory=list)  # (status after, sent) per message

    def feed(self, message: Message, now: datetime, policy: SagaPolicy, world: World) -> None:
        self.state, out = transition(self.state, message, now, policy)
        assert self.state is not None, "the order is the first message"
        self.fed.append((message, now))
        self.sent += out
        self.steps.append((self.state.status, out))
        world.answer(out)


@st.composite
def runs(draw: st.DrawFn) -> tuple[World, Run]:
    """One order, answered in an order hypothesis picks, with repeats, timeouts and late answers."""
    order = draw(orders())
    policy = SagaPolicy(payment_mode=draw(st.sampled_from(["internal", "external"])), timeout=timedelta(minutes=5))
    world = World(
        order,
        policy,
        in_stock={line.sku: draw(st.booleans()) for line in order.items},
        pays=draw(st.sampled_from([True, False, None])),
    )
    run = Run()
    now = T0
    run.feed(order, now, policy, world)
    for _ in range(draw(st.integers(0, 25))):
        action = draw(st.sampled_from(["answer", "answer", "answer", "repeat", "timer", "tick", "placed"]))
        now += timedelta(seconds=draw(st.integers(0, 200)))
        if action == "answer" and world.answers:  # the oldest answer not yet delivered, or any other
            run.feed(world.answers.pop(draw(st.integers(0, len(world.answers) - 1))), now, policy, world)
        elif action == "repeat" and run.fed:  # a redelivery of anything the saga already had
            run.feed(run.fed[draw(st.integers(0, len(run.fed) - 1))][0], now, policy, world)
        elif action == "timer":  # the timer fires, maybe before the deadline (then nothing happens)
            run.feed(SagaTimeout(order_id=ORDER), now, policy, world)
        elif action == "placed":  # the client sends the order again
            run.feed(order, now, policy, world)
    # in the end the timer fires after the deadline, and every answer still on its way arrives (late)
    now += timedelta(minutes=10)
    run.feed(SagaTimeout(order_id=ORDER), now, policy, world)
    while world.answers:
        run.feed(world.answers.pop(0), now, policy, world)
    return world, run


def _identity(out: Message) -> str:
    return out.event_id if isinstance(out, Event) else out.output_id


@PROPERTIES
@given(runs())
def test_the_saga_ends_in_exactly_one_terminal_state(case: tuple[World, Run]) -> None:
    _, run = case
    assert run.state is not None and run.state.status in TERMINAL
    first_end = next(i for i, (status, _) in enumerate(run.steps) if status in TERMINAL)
    assert {status for status, _ in run.steps[first_end:]} == {run.state.status}, "a terminal saga stays as it is"
    ends = (OrderConfirmed, OrderCancelled)
    results = {(type(out).__name__, out.event_id) for out in run.sent if isinstance(out, ends)}
    assert len(results) == 1, results
    assert (next(iter(results))[0] == "OrderConfirmed") == (run.state.status == COMPLETED)
    requests = (ReserveStock, ChargeWallet, PaymentRequested)
    assert not [out for _, sent in run.steps[first_end + 1:] for out in sent if isinstance(out, requests)]


@PROPERTIES
@given(runs())
def test_compensation_undoes_exactly_what_was_done(case: tuple[World, Run]) -> None:
    world, run = case
    assert run.state is not None
    committed = {out.sku for out in run.sent if isinstance(out, CommitStock)}
    released = {out.sku for out in run.sent if isinstance(out, ReleaseStock)}
    refunds = {_identity(out) for out in run.sent if isinstance(out, (RefundWallet, PaymentRefunded))}
    if run.state.status == COMPLETED:
        assert committed == set(run.state.lines) == world.held and not released
        assert world.charged and not refunds
    else:
        assert not committed
        assert released == world.held, "every held line, and only those, is given back"
        assert len(refunds) == (1 if world.charged else 0), "the money taken, and only that, is given back once"


@PROPERTIES
@given(runs())
def test_the_same_input_gives_the_same_outputs_and_ids(case: tuple[World, Run]) -> None:
    world, run = case
    again: SagaState | None = None
    tables: dict[tuple[str, str], bytes] = {}
    replayed: list[Message] = []
    through_tables: list[Message] = []
    for message, now in run.fed:
        again, out = transition(again, message, now, world.policy)
        replayed += out
        order_id = str(getattr(message, "order_id"))  # noqa: B009 - every saga message has one
        effects = saga_effects(order_id, message, Incoming("saga-replies", 0, 0, None, None, 0.0),
                               lambda table, key: tables.get((table, key)), now, world.policy,
                               exactly_once=False)  # every record a redelivery: duplicates re-send as transition does
        for write in effects.writes:  # the state as the tables keep it
            if write.value is None:
                tables.pop((write.table, write.key), None)
            else:
                tables[(write.table, write.key)] = write.value
        through_tables += [send.message for send in effects.sends]
    stored = tables.get((SAGAS, run.state.order_id)) if run.state is not None else None
    stored_state = _unmarked(SagaState.from_json(stored)) if stored is not None else None
    assert replayed == run.sent and again == run.state
    assert through_tables == run.sent and stored_state == run.state
    bodies: dict[str, bytes] = {}
    for sent in run.sent:
        if isinstance(sent, Event):
            body = orjson.dumps(sent.body() | {"occurred_at": "-"})
            assert bodies.setdefault(sent.event_id, body) == body, "an event id names one event"


@PROPERTIES
@given(runs(), st.data())
def test_a_redelivered_message_sends_again_what_it_sent(case: tuple[World, Run], data: st.DataObject) -> None:
    """A crash between the table write and the sends redelivers the message to the state it wrote:
    it must send again what it sent the first time (the design's rule: never drop, re-send)."""
    world, run = case
    index = data.draw(st.integers(0, len(run.fed) - 1))
    state: SagaState | None = None
    for message, now in run.fed[:index]:
        state, _ = transition(state, message, now, world.policy)
    message, now = run.fed[index]
    written, first = transition(state, message, now, world.policy)
    _, again = transition(written, message, now + timedelta(seconds=1), world.policy)
    sent_again = {_identity(out) for out in again}
    missing = [type(out).__name__ for out in first if _identity(out) not in sent_again]
    assert not missing, f"{type(message).__name__} redelivered to a {written and written.status} saga drops {missing}"


# --- stock and wallets --------------------------------------------------------------------------

STOCK_MESSAGES = st.lists(
    st.one_of(
        st.builds(lambda n, q: StockAdded(f"add-{n}", format_time(T0), "A", q), st.integers(0, 3), st.integers(1, 5)),
        st.builds(lambda o: ReserveStock(order_id=f"o{o}", sku="A", quantity=o % 4 + 1), st.integers(0, 5)),
        st.builds(lambda o: ReleaseStock(order_id=f"o{o}", sku="A"), st.integers(0, 5)),
        st.builds(lambda o: CommitStock(order_id=f"o{o}", sku="A"), st.integers(0, 5)),
    ),
    max_size=40,
)


@PROPERTIES
@given(STOCK_MESSAGES)
def test_stock_is_conserved_never_negative_and_answers_the_same(messages: list[Message]) -> None:
    stock = Stock(sku="A")
    added: dict[str, int] = {}
    sold = 0
    answers: dict[str, str] = {}
    reserved_once: set[str] = set()
    for message in messages:
        # the saga only releases or commits an order's line after the stock answered its reservation,
        # and never both; anything else is not a message the stock can get
        ended = isinstance(message, (ReleaseStock, CommitStock)) and stock.finished.get(message.order_id) in ("C", "R")
        if isinstance(message, (ReleaseStock, CommitStock)) and (message.order_id not in reserved_once or ended):
            continue
        before = stock
        stock, out = handle_stock(stock, message)
        if isinstance(message, StockAdded):
            added.setdefault(message.event_id, message.quantity)
        if isinstance(message, ReserveStock):
            reserved_once.add(message.order_id)
            (reply,) = out
            assert answers.setdefault(message.order_id, repr(reply)) == repr(reply), "a repeat gets its first answer"
        if isinstance(message, CommitStock) and before is not stock:
            assert stock.finished[message.order_id] == COMMITTED
            sold += before.holds[message.order_id]
        assert stock.available >= 0 and all(qty > 0 for qty in stock.holds.values())
        assert stock.available + stock.reserved + sold == sum(added.values()), "no unit made or lost"
        assert Stock.from_json(stock.to_json()) == stock


WALLET_MESSAGES = st.lists(
    st.one_of(
        st.builds(lambda n, a: FundsAdded(f"fund-{n}", format_time(T0), "c", Decimal(a)), st.integers(0, 3),
                  st.sampled_from(["5.00", "10.00", "0.50"])),
        st.builds(lambda o: ChargeWallet(order_id=f"o{o}", customer_id="c", amount=Decimal(f"{o + 1}.25")),
                  st.integers(0, 5)),
        st.builds(lambda o: RefundWallet(order_id=f"o{o}", customer_id="c", amount=Decimal(f"{o + 1}.25")),
                  st.integers(0, 5)),
    ),
    max_size=40,
)


@PROPERTIES
@given(WALLET_MESSAGES)
def test_a_wallet_never_goes_below_zero_and_charges_once(messages: list[Message]) -> None:
    wallet = Wallet(customer_id="c")
    funded: dict[str, Decimal] = {}
    answers: dict[str, str] = {}
    for message in messages:
        wallet, out = handle_wallet(wallet, message, T0)
        if isinstance(message, FundsAdded):
            funded.setdefault(message.event_id, message.amount)
        if isinstance(message, ChargeWallet):
            reply = repr([o for o in out if not isinstance(o, Event)])
            assert answers.setdefault(message.order_id, reply) == reply, "a repeated charge gets its first answer"
        assert wallet.balance >= 0
        assert wallet.balance == sum(funded.values()) - sum(wallet.charges.values()) + sum(wallet.refunds.values())
        for order_id, refund in wallet.refunds.items():
            assert refund == wallet.charges.get(order_id, Decimal("0.00")), "a refund gives back what was charged"
        assert Wallet.from_json(wallet.to_json()) == wallet


def _unmarked(state: SagaState) -> SagaState:
    """A stored state without what the handler adds to the transition's: which inputs changed it, and when."""
    return dataclasses.replace(state, last_input=-1, placed_at="", placed_input=-1, ended_at="", ended_input=-1)
