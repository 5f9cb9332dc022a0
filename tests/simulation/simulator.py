"""A deterministic simulation of the whole topology, run with the handlers the agents call.

Topics are in-memory logs split into partitions. Every agent of the application is a task per
partition that does what ``agents/`` does with one message: the ingress decodes a public event and
forwards it (``route_public``); the owners of saga, stock, wallet and customer state decode the
internal message, read their table, call ``saga_step`` / ``stock_step`` / ``wallet_step`` /
``customer_step`` and write the table before they send the outputs; the saga's timer sends
``SagaTimeout`` for the sagas past their deadline. Tasks belong to workers.

A seeded scheduler picks what happens next, so one seed is one exact run:

- any runnable partition delivers its next message (order within a partition, none across);
- a worker crashes while it handles a message, at any point: before the table write, after it
  and before the sends, between two sends, or before its offset commit (or the flush lost the
  table write but not the sends, which Faust's unordered producer buffer allows). Its tables are
  rebuilt from their changelogs and it starts again from the committed offset, on a worker
  chosen again (a rebalance); offsets are committed on a timer, as Faust does;
- a producer writes a send twice, at once or a little later;
- a consumer stalls (its partition's replies come late) and the clock jumps (everything paused);
- timers fire at random moments; in external payment mode a gateway answers, declines, answers
  late, twice or never.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from models import commands, handlers
from models.commands import Command, Message, SagaTimeout, decode_message
from models.events import BadMessage, Event, PaymentFailed, PaymentProcessed, decode_event
from models.handlers import deadline_entry, overdue
from models.saga import SagaPolicy, SagaState
from models.topics import INPUT_TOPICS, PAYMENT_EVENTS, PUBLIC_TOPICS, topic_of
from simulation.scenario import DECLINE, NEVER, PAY, Scenario, at_time, format_time_at

SAGAS, DEADLINES, STOCK, WALLETS, CUSTOMERS = "sagas", "saga_deadlines", "stock", "wallets", "customers"
INTERNAL_TOPICS = (commands.SAGA, commands.STOCK, commands.WALLET, commands.CUSTOMER)
#: agent name -> (the internal topic it reads, the tables it owns, the first being its state)
OWNERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "saga": (commands.SAGA, (SAGAS, DEADLINES)),
    "stock": (commands.STOCK, (STOCK,)),
    "wallet": (commands.WALLET, (WALLETS,)),
    "customers": (commands.CUSTOMER, (CUSTOMERS,)),
}
TABLES = (SAGAS, DEADLINES, STOCK, WALLETS, CUSTOMERS)


def internal_partition(key: str, partitions: int) -> int:
    """The application's partitioner, shared by internal topics and changelogs (co-partitioned)."""
    return zlib.crc32(key.encode()) % partitions


def public_partition(key: str, partitions: int) -> int:
    """The outside producers' partitioner: another hash, so the ingress has to forward by key."""
    return zlib.adler32(key.encode()) % partitions


# --- the handlers under test -------------------------------------------------------------------

SagaStep = Callable[[bytes | None, Message, datetime, SagaPolicy], tuple[bytes | None, list[Message], SagaState | None]]
KeyStep = Callable[[str, bytes | None, Message], tuple[bytes | None, list[Message]]]
TimedKeyStep = Callable[[str, bytes | None, Message, datetime], tuple[bytes | None, list[Message]]]
Route = Callable[[str, Event, str], tuple[str, Message] | None]


@dataclass(frozen=True)
class Handlers:
    """The per-message functions of ``models.handlers``; a test may plug a broken one in."""

    route_public: Route = handlers.route_public
    saga_step: SagaStep = handlers.saga_step
    stock_step: KeyStep = handlers.stock_step
    wallet_step: TimedKeyStep = handlers.wallet_step
    customer_step: KeyStep = handlers.customer_step


REAL = Handlers()

#: a test's own crash: ``plan(agent, message identity, attempt, effects)`` gives how many of the
#: effects become durable before the worker dies, or None for no planned crash
CrashPlan = Callable[[str, str, int, list["Effect"]], int | None]


# --- logs, tasks, workers ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One message in a partition; ``value`` None is a changelog tombstone."""

    key: str
    value: bytes | None
    note: str = ""


class Topic:
    """An in-memory topic: append-only partitions."""

    def __init__(self, name: str, partitions: int, partitioner: Callable[[str, int], int]) -> None:
        self.name = name
        self.partitions: list[list[Record]] = [[] for _ in range(partitions)]
        self.partitioner = partitioner

    def append(self, key: str, value: bytes | None, note: str = "") -> int:
        """Write a record to the partition of its key; return that partition."""
        partition = self.partitioner(key, len(self.partitions))
        self.partitions[partition].append(Record(key, value, note))
        return partition

    def records(self) -> list[Record]:
        """Every record, partition by partition."""
        return [record for part in self.partitions for record in part]


@dataclass(slots=True)
class Task:
    """One agent on one partition: its read position, committed offset, tables and owner."""

    agent: str  # "ingress", "saga", "stock", "wallet", "customers" or "gateway"
    topic: Topic
    partition: int
    worker: int  # -1: outside the application (the gateway), never crashes
    tables: dict[str, dict[str, bytes]] = field(default_factory=dict)
    position: int = 0
    committed: int = 0
    paused_until: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.agent}:{self.topic.name}/{self.partition}"

    def backlog(self) -> int:
        return len(self.topic.partitions[self.partition]) - self.position


# an effect of handling one message, made durable in order: (kind, name, key, value, identity) with
# kind "table" (name: table, value None deletes), "send" (name: topic) or "dlq" (name: topic, value: reason)
Effect = tuple[str, str, str, Any, str]


@dataclass
class Gateway:
    """The outside payment gateway of external mode: idempotent by request id, with a ledger."""

    charged: dict[str, Decimal] = field(default_factory=dict)
    refunded: dict[str, Decimal] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)  # request event id -> order id
    answered: dict[str, bytes] = field(default_factory=dict)  # order id -> the answer's value
    refund_ids: set[str] = field(default_factory=set)
    extra_refunds: list[str] = field(default_factory=list)


@dataclass
class Result:
    """Everything a run left behind, for the invariants."""

    scenario: Scenario
    topics: dict[str, Topic]
    changelogs: dict[str, Topic]
    tables: dict[str, dict[str, bytes]]  # rebuilt from the changelogs at the end
    dead_letters: list[tuple[str, str, str]]  # (topic, key, reason)
    gateway: Gateway
    problems: list[str]  # seen while running: a handler raised, no quiescence
    stats: dict[str, int]
    trace: list[str]
    end_time: float


class Simulation:
    """One run of a scenario; :meth:`run` gives its :class:`Result`.

    Faults are decided so that the rest of the scenario does not move them, which is what lets
    the shrinker drop inputs and keep the failure: whether a consumer stalls or the clock jumps
    before a message, whether the worker crashes while handling it (and where), and whether a
    send is written twice, is a function of the seed, the message (its identity: event id, or
    the command itself) and how often it was met. Only the interleaving of partitions, and the
    times of timer ticks and commits, come from seeded streams.
    """

    def __init__(
        self, scenario: Scenario, impl: Handlers = REAL, trace: bool = False, crash_plan: CrashPlan | None = None
    ) -> None:
        self.scenario = scenario
        self.crash_plan = crash_plan
        self.config = config = scenario.config
        self.impl = impl
        self.tracing = trace
        self.trace: list[str] = []
        seed = scenario.seed
        self.rng = random.Random(f"schedule/{seed}")
        self.rebalance = random.Random(f"rebalance/{seed}")
        self.policy = SagaPolicy(payment_mode=config.payment_mode, timeout=timedelta(seconds=config.timeout_s))
        self.now = 0.0
        self.topics: dict[str, Topic] = {}
        for name in PUBLIC_TOPICS:
            self.topics[name] = Topic(name, config.public_partitions, public_partition)
        for name in INTERNAL_TOPICS:
            self.topics[name] = Topic(name, config.partitions, internal_partition)
        self.changelogs = {name: Topic(f"{name}-changelog", config.partitions, internal_partition) for name in TABLES}
        assign = random.Random(f"assign/{seed}")
        self.tasks: list[Task] = []
        for name in INPUT_TOPICS:
            for p in range(config.public_partitions):
                self.tasks.append(Task("ingress", self.topics[name], p, assign.randrange(config.workers)))
        for agent, (topic, tables) in OWNERS.items():
            for p in range(config.partitions):
                worker = assign.randrange(config.workers)
                self.tasks.append(Task(agent, self.topics[topic], p, worker, {t: {} for t in tables}))
        self.app_tasks = list(self.tasks)
        self.saga_tasks = [task for task in self.tasks if task.agent == "saga"]
        self.gateway = Gateway()
        if config.payment_mode == "external":
            for p in range(config.public_partitions):
                self.tasks.append(Task("gateway", self.topics[PAYMENT_EVENTS], p, -1))
        self.behaviour = {each.key: each.gateway for each in scenario.inputs if each.gateway is not None}
        self.inputs = list(scenario.inputs)
        self.next_input = 0
        self.timed: list[tuple[float, int, str, Any]] = []  # (time, seq, kind, payload)
        self.seq = 0
        self.streams: dict[str, random.Random] = {}
        last_input = max((each.at for each in scenario.inputs), default=0.0)
        self.faults_until = last_input + 2 * config.timeout_s  # stalls and jumps, while orders come
        for worker in range(config.workers):
            self._again(f"tick/{worker}", config.check_interval_s, "tick", worker)
            self._again(f"commit/{worker}", config.commit_interval_s, "commit", worker)
        self.seen: dict[tuple[str, str], int] = {}  # (task or sender, message identity) -> times
        self.last_change = 0.0  # the last table write, input or gateway answer
        self.dead_letters: list[tuple[str, str, str]] = []
        self.problems: list[str] = []
        self.stats = dict.fromkeys(
            ("steps", "deliveries", "crashes", "duplicates", "stalls", "jumps", "timeouts_sent"), 0
        )

    # --- the scheduler -------------------------------------------------------------------------

    def run(self) -> Result:
        """Run until nothing is left to do (or the budget is spent)."""
        self._loop()
        return self._result()

    def _loop(self) -> None:
        budget = 100_000 + 1_000 * len(self.inputs)
        stuck_after = 5 * self.config.timeout_s + 2 * self.config.check_interval_s
        while True:
            self.stats["steps"] += 1
            if self.stats["deliveries"] > budget:
                self.problems.append(f"no quiescence after {budget} deliveries (a reply loop?)")
                return
            if self._due():  # what happens at a time happens then: inputs, answers, timers, commits, faults
                self._fire_due()
                continue
            if self.now - self.last_change > stuck_after and self._only_timers_left():
                self._log("nothing but timers for five timeouts: stop")
                return
            runnable = [t for t in self.tasks if t.paused_until <= self.now and t.backlog() > 0]
            if not runnable:
                wake = self._next_wake()
                if wake is None:
                    return
                self.now = max(self.now, wake)
                continue
            self._deliver(runnable[self.rng.randrange(len(runnable))])
            self.now += self.rng.expovariate(1 / self.config.step_s)

    def _due(self) -> bool:
        if self.next_input < len(self.inputs) and self.inputs[self.next_input].at <= self.now:
            return True
        return bool(self.timed) and self.timed[0][0] <= self.now

    def _only_timers_left(self) -> bool:
        """No input, answer or stalled consumer is still to come: whatever runs now only re-sends."""
        return (
            self.next_input >= len(self.inputs)
            and all(kind != "answer" for _, _, kind, _ in self.timed)
            and all(task.paused_until <= self.now or task.backlog() == 0 for task in self.tasks)
        )

    def _next_wake(self) -> float | None:
        """When something can happen again; None when all is done."""
        times = [t.paused_until for t in self.tasks if t.backlog() > 0]
        if self.next_input < len(self.inputs):
            times.append(self.inputs[self.next_input].at)
        in_progress = any(task.tables[DEADLINES] for task in self.saga_tasks)
        for when, _, kind, _ in self.timed:
            if kind in ("send", "answer") or (kind in ("tick", "commit") and in_progress):
                times.append(when)
        return min(times) if times else None

    def _fire_due(self) -> None:
        """The earliest thing due: the next input, or a timed event."""
        upcoming = self.inputs[self.next_input].at if self.next_input < len(self.inputs) else None
        if upcoming is not None and (not self.timed or upcoming <= self.timed[0][0]):
            each = self.inputs[self.next_input]
            self.next_input += 1
            self.last_change = self.now
            if self.tracing:
                self._log(f"input {each.topic}[{each.key}] {_brief(each.value)}")
            self._write(each.topic, each.key, each.value, "outside", f"{each.body.get('event_id')}")
            return
        _, _, kind, payload = heapq.heappop(self.timed)
        if kind == "tick":
            self._again(f"tick/{payload}", self.config.check_interval_s, "tick", payload)
            self._tick(payload)
        elif kind == "commit":
            self._again(f"commit/{payload}", self.config.commit_interval_s, "commit", payload)
            self._commit(payload)
        elif kind == "send":
            topic, key, value, note = payload
            if self.tracing:
                self._log(f"late write {topic}[{key}] {_brief(value)} ({note})")
            self.topics[topic].append(key, value, note)
        elif kind == "answer":
            self._gateway_answer(payload)

    def _later(self, delay: float, kind: str, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.timed, (self.now + delay, self.seq, kind, payload))

    def _again(self, stream: str, mean: float, kind: str, payload: Any) -> None:
        """Schedule the next of a recurring event; its times come from its own seeded stream."""
        rng = self.streams.get(stream)
        if rng is None:
            rng = self.streams[stream] = random.Random(f"{stream}/{self.scenario.seed}")
        self._later(mean * rng.uniform(0.5, 1.5), kind, payload)

    def _chance(self, *parts: object) -> float:
        """A number in [0, 1) that depends on the seed and ``parts`` only."""
        text = "|".join(map(str, (self.scenario.seed, *parts))).encode()
        return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") / 2**64

    def _count(self, who: str, identity: str) -> int:
        """How often ``who`` met this message, this time included."""
        n = self.seen.get((who, identity), 0) + 1
        self.seen[(who, identity)] = n
        return n

    # --- what the agents do with one message ---------------------------------------------------

    def _deliver(self, task: Task) -> None:
        record = task.topic.partitions[task.partition][task.position]
        assert record.value is not None
        identity = _raw_identity(record.value)
        if task.agent == "gateway":
            self.stats["deliveries"] += 1
            self._gateway_read(record)
            task.position += 1
            return
        if self.now <= self.faults_until and self._stall_or_jump(task, identity):
            return
        self.stats["deliveries"] += 1
        effects = self._ingress(task, record) if task.agent == "ingress" else self._own(task, record)
        where = f"{task.name}@{task.position}"
        if self.tracing:
            self._log(f"{where} w{task.worker} {_brief(record.value)} -> {_effects(effects)}")
        crash = (task.agent, identity, self._count(task.agent, identity))
        if self._make_durable(task, effects, where, task.worker, crash):
            task.position += 1

    def _stall_or_jump(self, task: Task, identity: str) -> bool:
        """Before a message: its consumer may stall (True: deliver it later), or the clock jump."""
        config = self.config
        key = ("pause", task.agent, identity, self._count(f"pause {task.agent}", identity))
        if config.stall_p and self._chance("stall", *key) < config.stall_p:
            task.paused_until = self.now + 2 * config.timeout_s * self._chance("stall for", *key)
            self.stats["stalls"] += 1
            self._log(f"stall {task.name} until {task.paused_until:.2f}")
            return True
        if config.jump_p and self._chance("jump", *key) < config.jump_p:
            jump = 1.5 * config.timeout_s * self._chance("jump by", *key)
            self.stats["jumps"] += 1
            self._log(f"clock jumps {jump:.2f}s")
            self.now += jump
        return False

    def _ingress(self, task: Task, record: Record) -> list[Effect]:
        """agents/ingress.py: validate, dead-letter what is bad, forward the rest keyed by aggregate."""
        assert record.value is not None
        topic = task.topic.name
        try:
            forward = self.impl.route_public(topic, decode_event(record.value), self.config.payment_mode)
        except BadMessage as exc:
            return [("dlq", topic, record.key, exc.reason, "")]
        if forward is None:
            return []
        destination, message = forward
        key = message.key if isinstance(message, Command) else message.aggregate_id
        return [("send", destination, key, message.encode(), _identity(message))]

    def _own(self, task: Task, record: Record) -> list[Effect]:
        """agents/owner_loop.py with the step of each agent: decode, read, step, write, send."""
        assert record.value is not None
        topic = task.topic.name
        try:
            message = decode_message(record.value)
        except BadMessage as exc:
            return [("dlq", topic, record.key, exc.reason, "")]
        key = record.key
        state_table = OWNERS[task.agent][1][0]
        stored = task.tables[state_table].get(key)
        effects: list[Effect] = []
        try:
            if task.agent == "saga":
                new, outputs, state = self.impl.saga_step(stored, message, at_time(self.now), self.policy)
                if state is not None:
                    effects += self._track_deadline(task, key, state)
            elif task.agent == "stock":
                new, outputs = self.impl.stock_step(key, stored, message)
            elif task.agent == "wallet":
                new, outputs = self.impl.wallet_step(key, stored, message, at_time(self.now))
            else:
                new, outputs = self.impl.customer_step(key, stored, message)
        except Exception as exc:  # noqa: BLE001 - the real loop retries, then dead-letters: a bug either way
            self.problems.append(f"{task.agent} raised {exc!r} on {_brief(record.value)}")
            return [("dlq", topic, key, repr(exc), "")]
        if new is not None:
            effects.append(("table", state_table, key, new, ""))
        return effects + [self._send(out) for out in outputs]

    def _track_deadline(self, task: Task, order_id: str, state: SagaState) -> list[Effect]:
        """agents/saga.py ``_track_deadline``: the deadline index beside the saga, written first."""
        wanted = deadline_entry(state)
        if task.tables[DEADLINES].get(order_id) != wanted:
            return [("table", DEADLINES, order_id, wanted, "")]
        return []

    @staticmethod
    def _send(out: Message) -> Effect:
        """agents/outputs.py: commands to their internal topic by key, events to their public topic."""
        if isinstance(out, Event):
            return ("send", topic_of(out.event_type), out.aggregate_id, out.encode(), _identity(out))
        return ("send", out.destination, out.key, out.encode(), _identity(out))

    def _tick(self, worker: int) -> None:
        """agents/saga.py ``expire_sagas``: a SagaTimeout for each saga past its deadline, on own partitions."""
        now = at_time(self.now)
        expired = [
            order_id
            for task in self.saga_tasks
            if task.worker == worker
            for order_id in overdue(((k.encode(), v) for k, v in task.tables[DEADLINES].items()), now)
        ]
        if not expired:
            return
        self.stats["timeouts_sent"] += len(expired)
        effects = [self._send(SagaTimeout(order_id=order_id)) for order_id in expired]
        if self.tracing:
            self._log(f"timer w{worker}: {len(expired)} past deadline -> {_effects(effects)}")
        identity = f"timer/{expired[0]}"
        crash = ("timer", identity, self._count("timer", identity))
        self._make_durable(None, effects, f"timer w{worker}", worker, crash)

    def _commit(self, worker: int) -> None:
        """Faust's commit: flush the producer (every write here is already durable), commit the offsets."""
        for task in self.tasks:
            if task.worker == worker:
                task.committed = task.position

    # --- durability and crashes ----------------------------------------------------------------

    def _make_durable(
        self, task: Task | None, effects: list[Effect], note: str, worker: int, crash: tuple[str, str, int]
    ) -> bool:
        """Write the effects in order; a crash may strike first. False when the worker crashed."""
        crash_at, lose_tables = len(effects) + 1, False
        planned = self.crash_plan(*crash, effects) if self.crash_plan is not None else None
        if planned is not None:
            crash_at = planned
        elif self.config.crash_p and self._chance("crash", *crash) < self.config.crash_p:
            crash_at = int(self._chance("crash at", *crash) * (len(effects) + 1))
            lose_tables = self._chance("lose", *crash) < 0.25  # the flush sent the outputs, not the table write
        for index, (kind, name, key, value, identity) in enumerate(effects):
            if index >= crash_at:
                break
            if kind == "table":
                assert task is not None
                if lose_tables:
                    continue
                self.changelogs[name].append(key, value, note)
                self.last_change = self.now
                if value is None:
                    task.tables[name].pop(key, None)
                else:
                    task.tables[name][key] = value
            elif kind == "send":
                self._write(name, key, value, note, identity)
            else:
                self.dead_letters.append((name, key, value))
        if crash_at <= len(effects):
            lost = "the flush lost the table writes, " if lose_tables else ""
            self._crash(worker, f"during {note} after {crash_at}/{len(effects)} effects ({lost}not committed)")
            return False
        return True

    def _write(self, topic: str, key: str, value: bytes, note: str, identity: str) -> None:
        """A producer send; it may be written twice, at once or after a retry."""
        target = self.topics[topic]
        target.append(key, value, note)
        if not self.config.dup_p:
            return
        sender = note.split(":")[0].split()[0]  # the agent, or "outside", "gateway", "timer"
        dup = (identity, sender, self._count(f"send {sender}", identity))
        if self._chance("dup", *dup) < self.config.dup_p:
            self.stats["duplicates"] += 1
            if self._chance("dup now", *dup) < 0.5:
                target.append(key, value, f"{note} (dup)")
            else:
                self._later(10 * self._chance("dup delay", *dup), "send", (topic, key, value, f"{note} (retried)"))

    def _crash(self, worker: int, why: str) -> None:
        """The worker dies: its tasks restart from their committed offsets with tables from changelogs."""
        self.stats["crashes"] += 1
        self._log(f"CRASH w{worker} {why}")
        for task in self.app_tasks:
            if task.worker != worker:
                continue
            task.position = task.committed
            for name in task.tables:
                task.tables[name] = self._restore(name, task.partition)
            task.worker = self.rebalance.randrange(self.config.workers)  # a rebalance assigns it again

    def _restore(self, table: str, partition: int) -> dict[str, bytes]:
        restored: dict[str, bytes] = {}
        for record in self.changelogs[table].partitions[partition]:
            if record.value is None:
                restored.pop(record.key, None)
            else:
                restored[record.key] = record.value
        return restored

    # --- the payment gateway (external mode) ---------------------------------------------------

    def _gateway_read(self, record: Record) -> None:
        """Charge once per request id, answer as the scenario says; book refunds once per event id."""
        assert record.value is not None
        body = orjson.loads(record.value)
        kind = body.get("event_type")
        if kind == "PaymentRequested":
            order_id = body["order_id"]
            first = body["event_id"] not in self.gateway.requests
            self.gateway.requests[body["event_id"]] = order_id
            if not first:  # a repeated request gets the answer it got, if it got one yet
                if order_id in self.gateway.answered:
                    self._log(f"gateway answers {order_id} again")
                    self._write(PAYMENT_EVENTS, order_id, self.gateway.answered[order_id], "gateway", f"gw-{order_id}")
                return
            plan = self.behaviour.get(order_id) or {"answer": PAY, "delay": 0.0, "twice": False}
            if plan["answer"] != NEVER:
                self._later(float(plan["delay"]), "answer", (body, plan))
        elif kind == "PaymentRefunded":
            if body["event_id"] in self.gateway.refund_ids:
                return
            self.gateway.refund_ids.add(body["event_id"])
            order_id = body["order_id"]
            if order_id in self.gateway.refunded:
                self.gateway.extra_refunds.append(order_id)
            self.gateway.refunded[order_id] = self.gateway.refunded.get(order_id, Decimal(0)) + Decimal(body["amount"])

    def _gateway_answer(self, payload: tuple[dict[str, Any], dict[str, Any]]) -> None:
        body, plan = payload
        order_id, amount = body["order_id"], Decimal(body["amount"])
        stamp = format_time_at(self.now)
        answer: Event
        if plan["answer"] == PAY:
            self.gateway.charged[order_id] = amount
            answer = PaymentProcessed(f"gw-{order_id}", stamp, order_id, body["customer_id"], amount)
        else:
            assert plan["answer"] == DECLINE
            answer = PaymentFailed(f"gw-{order_id}", stamp, order_id, body["customer_id"], amount, "CARD_DECLINED")
        value = answer.encode()
        self.last_change = self.now
        self.gateway.answered[order_id] = value
        self._log(f"gateway {plan['answer']} {order_id}")
        self._write(PAYMENT_EVENTS, order_id, value, "gateway", answer.event_id)
        if plan["twice"]:
            self._write(PAYMENT_EVENTS, order_id, value, "gateway (twice)", answer.event_id)

    # --- the end -------------------------------------------------------------------------------

    def _result(self) -> Result:
        tables: dict[str, dict[str, bytes]] = {name: {} for name in TABLES}
        for name in TABLES:
            for p in range(self.config.partitions):
                tables[name].update(self._restore(name, p))
        return Result(
            scenario=self.scenario,
            topics=self.topics,
            changelogs=self.changelogs,
            tables=tables,
            dead_letters=self.dead_letters,
            gateway=self.gateway,
            problems=self.problems,
            stats=self.stats,
            trace=self.trace,
            end_time=self.now,
        )

    def _log(self, line: str) -> None:
        if self.tracing:
            self.trace.append(f"{self.now:10.3f} {line}")


def _identity(message: Message) -> str:
    """What names a message whatever its timestamps: the event id, or the command itself."""
    if isinstance(message, Event):
        return f"{message.event_type}/{message.event_id}"
    return message.output_id


def _raw_identity(value: bytes) -> str:
    """The identity of a message as it was written (without its timestamp): what faults are keyed by."""
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return f"raw/{zlib.crc32(value)}"
    if not isinstance(body, dict):
        return f"raw/{zlib.crc32(value)}"
    if "kind" in body:
        return "/".join(str(v) for v in body.values())
    return f"{body.get('event_type')}/{body.get('event_id')}"


def _brief(value: bytes | None) -> str:
    """A short name of a message for traces."""
    if value is None:
        return "<tombstone>"
    body = orjson.loads(value)
    kind = body.get("kind") or body.get("event_type")
    about = [str(body[k]) for k in ("order_id", "sku", "customer_id", "quantity", "amount") if k in body]
    return f"{kind}({', '.join(about)})"


def _effects(effects: list[Effect]) -> str:
    parts = []
    for kind, name, key, value, _ in effects:
        if kind == "table":
            parts.append(f"{name}[{key}]{'=del' if value is None else ''}")
        elif kind == "send":
            parts.append(f"{name}:{_brief(value)}")
        else:
            parts.append(f"DLQ({value})")
    return ", ".join(parts) or "-"


def simulate(
    scenario: Scenario, impl: Handlers = REAL, trace: bool = False, crash_plan: CrashPlan | None = None
) -> Result:
    """Run a scenario once."""
    return Simulation(scenario, impl, trace, crash_plan).run()
