"""What one simulated run is made of: its configuration and the events the outside world writes.

A scenario is generated from a seed, printed and read back as JSON, and cut down by the shrinker;
the simulator runs it with the same seed to the same result, whatever process runs it.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from models.events import FundsAdded, OrderLine, OrderPlaced, StockAdded, UserRegistered, format_time
from models.topics import INVENTORY_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS, USER_EVENTS

#: how a simulated payment gateway answers one order's PaymentRequested (external payment mode)
PAY, DECLINE, NEVER = "pay", "decline", "never"
#: simulated time 0
EPOCH = datetime(2024, 5, 6, 12, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Config:
    """The topology and the fault rates of one run; times are simulated seconds."""

    payment_mode: str = "internal"
    guarantee: str = "at_least_once"  # or "exactly_once": Kafka transactions
    partitions: int = 4  # internal topics and changelogs
    public_partitions: int = 3  # public topics, written with another partitioner
    workers: int = 2
    timeout_s: float = 120.0
    check_interval_s: float = 15.0
    step_s: float = 0.05  # mean time one delivery takes
    commit_interval_s: float = 2.8  # a worker commits the offsets of what it handled (Faust's default)
    crash_p: float = 0.005  # a worker crashes while it handles a message, at any point in it
    dup_p: float = 0.03  # a producer send is written twice (now, or a little later)
    stall_p: float = 0.0  # a consumer stalls for up to two timeouts before a message
    jump_p: float = 0.0  # the clock jumps up to 1.5 timeouts (everything paused) before a message
    zombie_p: float = 0.0  # exactly_once: a worker pauses past its session timeout before a message, comes back
    # stalls and jumps come while orders come in, and for two timeouts after

    def quiet(self) -> Config:
        """The same topology without any fault: for shrinking and for the fault-free baseline."""
        return dataclasses.replace(
            self, crash_p=0.0, dup_p=0.0, stall_p=0.0, jump_p=0.0, zombie_p=0.0
        )


@dataclass(frozen=True)
class Input:
    """One message the outside world writes at simulated time ``at``."""

    at: float
    topic: str
    key: str
    body: dict[str, Any]
    group: str  # inputs about the same thing (an order and its resends) are shrunk together
    gateway: dict[str, Any] | None = None  # external mode: how the gateway answers this order

    @property
    def value(self) -> bytes:
        """The Kafka value."""
        return orjson.dumps(self.body)

    def describe(self) -> str:
        """One line for a trace."""
        extra = f" gateway={orjson.dumps(self.gateway).decode()}" if self.gateway else ""
        return f"t={self.at:8.2f} {self.topic}[{self.key}] {self.value.decode()}{extra}"


@dataclass(frozen=True)
class Scenario:
    """A run: its seed (which also drives the scheduler and the faults), configuration and inputs."""

    seed: int
    config: Config
    inputs: tuple[Input, ...] = field(default_factory=tuple)

    def with_inputs(self, inputs: list[Input] | tuple[Input, ...]) -> Scenario:
        """The same run with other inputs."""
        return dataclasses.replace(self, inputs=tuple(inputs))

    def to_json(self) -> bytes:
        """The replay file."""
        return orjson.dumps(
            {"seed": self.seed, "config": dataclasses.asdict(self.config),
             "inputs": [dataclasses.asdict(each) for each in self.inputs]},
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Scenario:
        """Read a replay file written by :meth:`to_json`."""
        body = orjson.loads(raw)
        return cls(
            seed=body["seed"],
            config=Config(**body["config"]),
            inputs=tuple(Input(**each) for each in body["inputs"]),
        )


def generate(seed: int, orders: int = 100, payment_mode: str | None = None, guarantee: str | None = None) -> Scenario:
    """A random but reproducible run: contended stock and wallets, resends, invalid orders, restocks."""
    rng = random.Random(f"scenario/{seed}")
    mode = payment_mode or ("external" if rng.random() < 0.3 else "internal")
    # its own stream, so that adding the guarantee left every other choice of a seed as it was
    guarantee = guarantee or random.Random(f"guarantee/{seed}").choice(["at_least_once", "exactly_once"])
    timeout = rng.choice([30.0, 60.0, 120.0, 300.0])
    step = rng.choice([0.005, 0.01, 0.02])  # a delivery takes 5-20 ms: hundreds of them between timer scans
    commit_interval = step * rng.choice([10, 50, 250])  # Faust commits every 2.8 s: a few hundred messages
    # a crash makes the worker handle again what it did since its last commit: keep that a
    # fraction of the work, or a run is nothing but redeliveries (as it would be in real life)
    redelivered = rng.choice([0.0, 0.1, 0.2, 0.4])
    crash_p = round(min(0.02, redelivered * step / commit_interval), 6)
    # about 20 deliveries an order; a load over 1 means orders come faster than they are handled
    load = rng.uniform(0.2, 0.9) if rng.random() < 0.9 else rng.uniform(1.0, 1.5)
    gap = step * 20 / load
    deliveries = 25 * max(orders, 1)  # about what a run takes

    def per_delivery(expected: int) -> float:  # so that about ``expected`` come in a run
        return round(expected / deliveries, 6)

    config = Config(
        payment_mode=mode,
        guarantee=guarantee,
        partitions=rng.choice([1, 2, 3, 4, 8]),
        public_partitions=rng.choice([1, 2, 3, 5]),
        workers=rng.randint(1, 3),
        timeout_s=timeout,
        check_interval_s=timeout / rng.choice([2, 5, 10]),
        step_s=step,
        commit_interval_s=commit_interval,
        crash_p=crash_p,
        dup_p=rng.choice([0.0, 0.02, 0.1]),
        stall_p=per_delivery(rng.choice([0, 2, 8])),
        jump_p=per_delivery(rng.choice([0, 1, 3])),
        zombie_p=crash_p if guarantee == "exactly_once" else 0.0,  # no draw: every other choice stays
    )
    return Scenario(seed, config, tuple(_inputs(rng, orders, config, gap)))


def _inputs(rng: random.Random, orders: int, config: Config, gap: float) -> list[Input]:
    """Stock, funds, customers and orders, written at increasing times."""
    skus = [f"sku-{chr(ord('A') + n)}" for n in range(rng.randint(1, 6))]
    prices = {sku: Decimal(rng.choice(["1.00", "2.50", "4.99", "10.00"])) for sku in skus}
    customers = [f"c{n}" for n in range(rng.randint(1, 8))]
    count = 0

    def next_id() -> str:
        nonlocal count
        count += 1
        return f"e{count}"

    at = 0.0
    out: list[Input] = []
    for customer in customers:
        name, email = f"Customer {customer}", f"{customer}@example.org"
        user = UserRegistered(next_id(), format_time_at(at), customer, name, email)
        out.append(Input(at, USER_EVENTS, customer, user.body(), f"user:{customer}"))
    demand: dict[str, int] = dict.fromkeys(skus, 0)
    spend: dict[str, Decimal] = dict.fromkeys(customers, Decimal("0.00"))
    plan: list[tuple[str, str, tuple[OrderLine, ...]]] = []
    for n in range(orders):
        lines = tuple(
            OrderLine(sku=sku, quantity=rng.randint(1, 3), unit_price=prices[sku])
            for sku in rng.sample(skus, rng.randint(1, min(3, len(skus))))
        )
        customer = rng.choice(customers)
        plan.append((f"o{n}", customer, lines))
        for line in lines:
            demand[line.sku] += line.quantity
            spend[customer] += line.quantity * line.unit_price
    # roughly enough, so that some orders win and some lose the race for the last units
    supply = {sku: int(demand[sku] * rng.uniform(0.3, 1.3)) for sku in skus}
    funds = {c: (spend[c] * Decimal(str(round(rng.uniform(0.3, 1.3), 2)))).quantize(Decimal("0.01")) for c in customers}
    restock_at = gap * orders * rng.uniform(0.2, 0.8)

    def stock(at: float, sku: str, quantity: int) -> None:
        if quantity > 0:
            event = StockAdded(next_id(), format_time_at(at), sku, quantity)
            out.append(Input(at, INVENTORY_EVENTS, sku, event.body(), f"stock:{event.event_id}"))

    def fund(at: float, customer: str, amount: Decimal) -> None:
        if amount > 0:
            event = FundsAdded(next_id(), format_time_at(at), customer, amount)
            out.append(Input(at, PAYMENT_EVENTS, customer, event.body(), f"funds:{event.event_id}"))

    for sku in skus:
        units = supply[sku] * 2 // 3 if rng.random() < 0.5 else supply[sku]
        stock(0.0, sku, units)
        stock(restock_at, sku, supply[sku] - units)
    for customer in customers:
        money = (funds[customer] * Decimal("0.6")).quantize(Decimal("0.01")) if rng.random() < 0.5 else funds[customer]
        fund(0.0, customer, money)
        fund(restock_at, customer, funds[customer] - money)
    for order_id, customer, lines in plan:
        at += rng.expovariate(1 / gap)
        total = sum((line.quantity * line.unit_price for line in lines), Decimal("0.00"))
        order = OrderPlaced(next_id(), format_time_at(at), order_id, customer, lines, total)
        body = order.body()
        gateway = _gateway(rng, config) if config.payment_mode == "external" else None
        if rng.random() < 0.02:  # invalid: the total does not add up; must be dead-lettered, never started
            body = {**body, "total_amount": f"{total + 1:.2f}"}
            out.append(Input(at, ORDER_EVENTS, order_id, body, f"order:{order_id}", gateway))
            continue
        out.append(Input(at, ORDER_EVENTS, order_id, body, f"order:{order_id}", gateway))
        if rng.random() < 0.1:  # the client sends the order again, as a new event with the same order id
            again = {**body, "event_id": next_id()}
            out.append(Input(at + rng.uniform(0, 3 * gap), ORDER_EVENTS, order_id, again, f"order:{order_id}"))
    for each in [e for e in out if e.topic in (INVENTORY_EVENTS, PAYMENT_EVENTS) and rng.random() < 0.1]:
        # a producer outside resends a funding or a stock arrival with the same event id
        out.append(dataclasses.replace(each, at=each.at + rng.uniform(0, 10 * gap)))
    out.sort(key=lambda each: each.at)
    return out


def _gateway(rng: random.Random, config: Config) -> dict[str, Any]:
    """How the gateway treats one order: answer, decline, answer late (maybe after the timeout) or never."""
    roll = rng.random()
    if roll < 0.6:
        answer, delay = PAY, rng.uniform(0, 5)
    elif roll < 0.75:
        answer, delay = DECLINE, rng.uniform(0, 5)
    elif roll < 0.95:
        answer, delay = rng.choice([PAY, DECLINE]), rng.uniform(0, 2 * config.timeout_s)
    else:
        answer, delay = NEVER, 0.0
    return {"answer": answer, "delay": round(delay, 3), "twice": rng.random() < 0.1}


def at_time(seconds: float) -> datetime:
    """The wall-clock time of a simulated time."""
    return EPOCH + timedelta(seconds=seconds)


def format_time_at(seconds: float) -> str:
    """The contract's timestamp of a simulated time."""
    return format_time(at_time(seconds))
