"""A deterministic simulation of the whole topology, run with the code the worker runs.

Topics are in-memory logs split into partitions. Every agent of the application is a task per
partition that hands each record to the worker's own executor (``agents/executor.py``) with the
agent's own handler (``models/handlers.py``): the ingress handlers, the saga, stock, wallet and
customer handlers, and the timer's overdue decision. Only the tables and topics under the executor
are in-memory ones here: a table write goes to the task's table and its changelog, a send to a
topic, a dead letter to the list of them. Tasks belong to workers.

A seeded scheduler picks what happens next, so one seed is one exact run:

- any runnable partition delivers its next few records as one fetched batch (order within a partition,
  none across); internal records are envelopes (``models.envelope``), opened message by message, and
  what a batch sends to internal topics is held and written as one envelope per partition at its end;
  under exactly_once what it sends to a partition of a task on the same worker is handled in place
  (``agents.local_delivery``), with that task's tables, in the same transaction;
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
import itertools
import random
import zlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from agents.executor import Executor, Headers
from agents.local_delivery import LocalDelivery
from agents.retry import Backoff
from app.topic_names import INTERNAL_TOPICS
from models import commands, handlers
from models.effects import Effects, Incoming, opened
from models.envelope import is_envelope, unpack
from models.events import BadMessage, Event, PaymentFailed, PaymentProcessed
from models.handlers import CUSTOMERS, DEADLINES, EXPIRY, SAGAS, STATS, STOCK, TABLES, WALLETS, Handler, Reader
from models.saga import SagaPolicy
from models.topics import INPUT_TOPICS, PAYMENT_EVENTS, PUBLIC_TOPICS
from simulation.scenario import DECLINE, NEVER, PAY, Config, Scenario, at_time, format_time_at

#: the most records one delivery hands an agent
MAX_BATCH = 4
#: agent name -> (the internal topic it reads, the tables it owns, the first being its state)
OWNERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "saga": (commands.SAGA, (SAGAS, DEADLINES, EXPIRY)),
    "stock": (commands.STOCK, (STOCK,)),
    "wallet": (commands.WALLET, (WALLETS,)),
    "customers": (commands.CUSTOMER, (CUSTOMERS,)),
}


def _changelog_partitions(table: str, config: Config) -> int:
    """Tables are co-partitioned with the internal topics; the counts are written from public partitions too."""
    return max(config.partitions, config.public_partitions) if table == STATS else config.partitions


def internal_partition(key: str, partitions: int) -> int:
    """The application's partitioner, shared by internal topics and changelogs (co-partitioned)."""
    return zlib.crc32(key.encode()) % partitions


def _envelope_partition(key: bytes, partitions: int) -> int:
    """The executor's envelopes go where the key's partition is."""
    return internal_partition(key.decode(), partitions)


def public_partition(key: str, partitions: int) -> int:
    """The outside producers' partitioner: another hash, so the ingress has to forward by key."""
    return zlib.adler32(key.encode()) % partitions


# --- the code under test ---------------------------------------------------------------------

TimeoutsDue = Callable[
    [list[tuple[str, bytes]], datetime, dict[str, datetime], timedelta], tuple[Effects, dict[str, datetime]]
]


@dataclass(frozen=True)
class Handlers:
    """The worker's handlers (``models.handlers``) and executor; a test may plug a broken one in."""

    ingress: Callable[[str, str], Handler] = handlers.ingress
    saga: Callable[[SagaPolicy, bool], Handler] = handlers.saga
    stock: Callable[[bool], Handler] = handlers.stock
    wallet: Callable[[bool], Handler] = handlers.wallet
    customers: Handler = handlers.customers
    timeouts_due: TimeoutsDue = handlers.timeouts_due
    executor: type[Executor] = Executor
    # what exactly_once rests on besides the handlers: each send joins the open transaction of the record's
    # worker (app/transactions.py), and a worker that stopped uncleanly drops its local
    # tables for the committed changelogs (app/local_state.py); a test may switch either off
    sends_in_transaction: bool = True
    drops_tables_after_abort: bool = True
    fences_zombies: bool = True  # the group refuses the old owner's offsets: they name a generation it has left
    # exactly_once: a message to a partition of the same worker is handled in place (agents/local_delivery.py)
    hands_over_in_place: bool = True


REAL = Handlers()

#: a test's own crash: ``plan(agent, message identity, attempt, effects)`` gives how many of the
#: effects become durable before the worker dies, or None for no planned crash
CrashPlan = Callable[[str, str, int, Effects], int | None]


class Crash(BaseException):
    """The worker dies here; not an ``Exception``, so no retry or handler can catch it (as kill -9)."""


@dataclass
class Fault:
    """The worker dies once ``at`` of the current message's ``effects`` are durable (never if more)."""

    at: int
    effects: int
    lose_tables: bool = False
    done: int = 0

    def spend(self) -> None:
        """One more effect is about to become durable; the worker may die first."""
        if self.done >= self.at:
            raise Crash
        self.done += 1

    @property
    def strikes(self) -> bool:
        """The worker dies while handling this message (at the latest before its offset commit)."""
        return self.at <= self.effects


def no_fault() -> Fault:
    return Fault(at=1 << 62, effects=0)


def run_now(work: Any) -> None:
    """Run a coroutine that never waits (in-memory tables and topics) to its end, here and now."""
    try:
        work.send(None)
    except StopIteration:
        return
    work.close()
    raise RuntimeError("the executor waited on something; in the simulation nothing should wait")


async def _no_sleep(delay: float) -> None:
    """Retries back off in no time: the handlers are deterministic, waiting changes nothing here."""


# --- logs, tasks, workers ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One message in a partition; ``value`` None is a changelog tombstone."""

    key: str
    value: bytes | None
    note: str = ""
    at: float = 0.0  # the simulated time it was written: its timestamp


class Topic:
    """An in-memory topic: append-only partitions; ``clock`` stamps the records."""

    def __init__(
        self, name: str, partitions: int, partitioner: Callable[[str, int], int], clock: Callable[[], float]
    ) -> None:
        self.name = name
        self.partitions: list[list[Record]] = [[] for _ in range(partitions)]
        self.partitioner, self.clock = partitioner, clock

    def append(self, key: str, value: bytes | None, note: str = "", partition: int | None = None) -> int:
        """Write a record to ``partition``, or to the partition of its key; return the partition."""
        if partition is None:
            partition = self.partitioner(key, len(self.partitions))
        self.partitions[partition].append(Record(key, value, note, self.clock()))
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
    #: exactly_once: changelog writes and sends (with their partition) of the open transaction, made visible
    #: by the commit
    #: the worker's one transaction holds them all, in the order made (the first item): :meth:`Simulation._commit`
    pending: list[tuple[int, str, str, str, bytes | None, str, int | None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.agent}:{self.topic.name}/{self.partition}"

    def backlog(self) -> int:
        return len(self.topic.partitions[self.partition]) - self.position


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
    #: (topic, partition, offset, place in the envelope or -1) of each message dead-lettered
    dead_letter_origins: set[tuple[str, int, int, int]]
    gateway: Gateway
    problems: list[str]  # seen while running: a handler raised, no quiescence
    stats: dict[str, int]
    trace: list[str]
    end_time: float


class Handing:
    """Whose tables a handler uses: the task a record was delivered to, or the one it handed a message to in
    place (what Faust's current event says in the worker). Its transaction is the task delivered to's."""

    def __init__(self, task: Task) -> None:
        self.origin = self.current = task


class SimTable:
    """A task's table under the executor: each write goes to the changelog, then to the local copy."""

    def __init__(self, sim: Simulation, handing: Handing, name: str, note: str) -> None:
        self.sim, self.handing, self.name, self.note = sim, handing, name, note

    def get(self, key: str) -> bytes | None:
        return self.handing.current.tables[self.name].get(key)

    def __setitem__(self, key: str, value: bytes) -> None:
        self._write(key, value)

    def __delitem__(self, key: str) -> None:
        self._write(key, None)

    def _write(self, key: str, value: bytes | None) -> None:
        fault = self.sim.fault
        fault.spend()
        if fault.lose_tables:
            return
        task = self.handing.current
        if self.sim.exactly_once:  # RocksDB now, the changelog record with the transaction
            self.handing.origin.pending.append((next(self.sim.made), "changelog", self.name, key, value, self.note,
                                                task.partition))
        else:  # Faust writes the changelog partition of the record being handled
            self.sim.changelogs[self.name].append(key, value, self.note, task.partition)
        self.sim.last_change = self.sim.now
        if value is None:
            task.tables[self.name].pop(key, None)
        else:
            task.tables[self.name][key] = value


class SimOutbox:
    """The producer under the executor: a send is appended to its topic, a dead letter recorded.

    Under exactly_once a task's sends join its open transaction; the timer's have none to join.
    """

    def __init__(self, sim: Simulation, task: Task | None, note: str) -> None:
        self.sim, self.task, self.note = sim, task, note

    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers,
                   partition: int | None = None) -> None:
        self.sim.fault.spend()
        assert key is not None, "every record in the simulation has a key"
        if topic.endswith(".DLQ"):  # what the invariants read of a dead letter: why, and where it was
            told = dict(headers)
            value = orjson.dumps({name: told[f"{prefix}.{name}"].decode() for prefix, name in
                                  (("failure", "reason"), ("original", "partition"), ("original", "offset"))}
                                 | {"index": int(told.get("original.index", b"-1"))})
        if self.task is not None and self.sim.exactly_once and self.sim.impl.sends_in_transaction:
            self.task.pending.append((next(self.sim.made), "send", topic, key.decode(), value, self.note, partition))
        else:
            assert value is not None
            self.sim._publish(topic, key.decode(), value, self.note, exactly_once=False, partition=partition)


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
        clock = self._clock
        for name in PUBLIC_TOPICS:
            self.topics[name] = Topic(name, config.public_partitions, public_partition, clock)
        for name in INTERNAL_TOPICS:
            self.topics[name] = Topic(name, config.partitions, internal_partition, clock)
        self.changelogs = {
            name: Topic(f"{name}-changelog", _changelog_partitions(name, config), internal_partition, clock)
            for name in TABLES
        }
        assign = random.Random(f"assign/{seed}")
        self.tasks: list[Task] = []
        for name in INPUT_TOPICS:
            for p in range(config.public_partitions):
                self.tasks.append(Task("ingress", self.topics[name], p, assign.randrange(config.workers), {STATS: {}}))
        for agent, (topic, tables) in OWNERS.items():
            for p in range(config.partitions):
                worker = assign.randrange(config.workers)
                self.tasks.append(Task(agent, self.topics[topic], p, worker, {t: {} for t in (*tables, STATS)}))
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
        self.exactly_once = config.guarantee == "exactly_once"
        self.handlers = self._handlers()
        self.fault = no_fault()
        self.told: dict[int, dict[str, datetime]] = {worker: {} for worker in range(config.workers)}
        self.last_change = 0.0  # the last table write, input or gateway answer
        self.dead_letters: list[tuple[str, str, str]] = []
        self.dead_letter_origins: set[tuple[str, int, int, int]] = set()  # (topic, partition, offset, index)
        self.problems: list[str] = []
        self.made = itertools.count()  # the order writes and sends are made in, across a worker's tasks
        self.stats = dict.fromkeys(
            ("steps", "deliveries", "crashes", "duplicates", "stalls", "jumps", "zombies", "timeouts_sent"), 0
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
            and not any(task.pending for task in self.tasks)
            and all(kind != "answer" for _, _, kind, _ in self.timed)
            and all(task.paused_until <= self.now or task.backlog() == 0 for task in self.tasks)
        )

    def _next_wake(self) -> float | None:
        """When something can happen again; None when all is done."""
        times = [t.paused_until for t in self.tasks if t.backlog() > 0]
        if self.next_input < len(self.inputs):
            times.append(self.inputs[self.next_input].at)
        in_progress = any(task.tables[DEADLINES] for task in self.saga_tasks)
        uncommitted = any(task.pending for task in self.tasks)
        for when, _, kind, _ in self.timed:
            if kind in ("send", "answer") or (kind in ("tick", "commit") and in_progress) or (
                kind == "commit" and uncommitted
            ):
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
            topic, key, value, note, partition = payload
            if self.tracing:
                self._log(f"late write {topic}[{key}] {_brief(value)} ({note})")
            self.topics[topic].append(key, value, note, partition)
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
        identity = _identity(record.value)
        if task.agent == "gateway":
            self.stats["deliveries"] += 1
            self._gateway_read(record)
            task.position += 1
            return
        if self.now <= self.faults_until and self._stall_or_jump(task, identity):
            return
        if self._zombie_strikes(task, identity):
            self._zombie(task, self._fetched(task, 1))
            return
        self.stats["deliveries"] += 1
        # a fetch hands the agent what the partition holds, up to a few records: their sends share envelopes
        count = 1 + int(self._chance("batch", task.name, identity, self._count(f"batch {task.name}", identity))
                        * min(task.backlog(), MAX_BATCH))
        messages = self._fetched(task, count)
        where = f"{task.name}@{task.position}" + (f"+{count - 1}" if count > 1 else "")
        in_place = self.exactly_once and self.impl.hands_over_in_place
        if self._execute(task, where, task.worker, self._handling(task, messages, where, task.worker), in_place):
            task.position += count

    def _fetched(self, task: Task, count: int) -> list[Incoming]:
        """The messages of the task's next ``count`` records: an internal record's envelope opened."""
        messages: list[Incoming] = []
        for offset in range(task.position, task.position + count):
            record = task.topic.partitions[task.partition][offset]
            incoming = Incoming(task.topic.name, task.partition, offset, record.key.encode(), record.value,
                                at_time(record.at).timestamp())
            messages += opened(incoming) if task.agent in OWNERS else [incoming]
        return messages

    def _handling(
        self, task: Task, messages: list[Incoming], where: str, worker: int
    ) -> Callable[[Executor], Awaitable[None]]:
        """The work of handling the messages one by one, each with its own crash decision."""

        async def work(executor: Executor) -> None:
            for incoming in messages:
                await executor.process(self._watched_for(task, incoming, where, worker), incoming)
                await executor.deliver_in_place()

        return work

    def _handlers(self) -> dict[str, Callable[[Task], Handler]]:
        """Each agent's handler for a task, as the worker wires them (``app/composition.py``)."""
        impl, mode, eos = self.impl, self.config.payment_mode, self.exactly_once
        ingress = {topic: impl.ingress(topic, mode) for topic in INPUT_TOPICS}
        saga, stock, wallet = impl.saga(self.policy, eos), impl.stock(eos), impl.wallet(eos)
        return {
            "ingress": lambda task: ingress[task.topic.name],
            "saga": lambda task: saga,
            "stock": lambda task: stock,
            "wallet": lambda task: wallet,
            "customers": lambda task: impl.customers,
        }

    def _watched_for(self, task: Task, incoming: Incoming, where: str, worker: int) -> Handler:
        """The task's agent's handler, watched for the crash this meeting of the message decides."""
        identity = _raw_identity(incoming.value or b"")
        crash = (task.agent, identity, self._count(task.agent, identity))
        return self._watched(self.handlers[task.agent](task), where, worker, crash)

    def _watched(self, handler: Handler, where: str, worker: int, crash: tuple[str, str, int]) -> Handler:
        """The handler, with its first answer deciding the crash (if any) among the effects it returns."""
        first = True

        def watched(record: Incoming, read: Reader, now: datetime) -> Effects:
            nonlocal first
            called, first = first, False
            try:
                effects = handler(record, read, now)
            except BadMessage:
                if called:
                    self._arm(crash, None)
                raise
            except Exception as exc:
                if called:
                    self.problems.append(f"{crash[0]} raised {exc!r} on {_brief(record.value)}")
                    self._arm(crash, None)
                raise
            if called:
                if self.tracing:
                    self._log(f"{where} w{worker} {_brief(record.value)} -> {_describe(effects)}")
                self._arm(crash, effects)
            return effects

        return watched

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

    def _zombie_strikes(self, task: Task, identity: str) -> bool:
        """Whether the task's worker pauses past its session timeout before this message."""
        chance = self.config.zombie_p
        return bool(chance) and self._chance("zombie", task.name, identity, self._count(f"zombie {task.name}",
                                                                                          identity)) < chance

    def _zombie(self, task: Task, messages: list[Incoming]) -> None:
        """The group gives the paused worker's task to another worker, which starts over from the committed
        offset and changelogs; the paused worker comes back, handles the message it had and commits.

        Its offsets name a group generation the group has left (KIP-447): the commit fails and nothing the
        zombie did is seen. Without fencing its writes and sends would be committed too.
        """
        self.stats["zombies"] += 1
        zombie = replace(task, tables={name: dict(rows) for name, rows in task.tables.items()},
                                     pending=list(task.pending))
        self._log(f"ZOMBIE {task.name}: w{task.worker} paused past its session timeout")
        if self.exactly_once and self.impl.hands_over_in_place:
            # one transaction spans the worker's tasks, and messages handed over in place wrote their tables:
            # the group has dropped the whole worker, and all of its tasks start over elsewhere
            for other in self.app_tasks:
                if other is not task and other.worker == task.worker:
                    self._reassign(other)
        self._reassign(task)
        handler = self.handlers[task.agent](zombie)
        note = f"{task.name}@{zombie.position} zombie"

        async def work(executor: Executor) -> None:
            for incoming in messages:
                await executor.process(handler, incoming)

        self._execute(zombie, note, zombie.worker, work)
        if self.impl.fences_zombies:
            self._log(f"{note}: fenced, its transaction aborted")
        else:
            self._commit_tasks([zombie])

    def _tick(self, worker: int) -> None:
        """The worker's timer: the real overdue decision on its own saga partitions, applied by the executor."""
        index = [item for task in self.saga_tasks if task.worker == worker for item in task.tables[DEADLINES].items()]
        interval = timedelta(seconds=self.config.check_interval_s)
        effects, self.told[worker] = self.impl.timeouts_due(index, at_time(self.now), self.told[worker], interval)
        if not effects.sends:
            return
        self.stats["timeouts_sent"] += len(effects.sends)
        note = f"timer w{worker}"
        if self.tracing:
            self._log(f"{note}: {len(effects.sends)} past deadline -> {_describe(effects)}")
        identity = f"timer/{effects.sends[0].key}"
        self._arm(("timer", identity, self._count("timer", identity)), effects)
        self._execute(None, note, worker, lambda executor: executor.apply(effects))

    # --- durability and crashes ----------------------------------------------------------------

    def _arm(self, crash: tuple[str, str, int], effects: Effects | None) -> None:
        """Decide whether the worker dies while the effects become durable, and after how many.

        ``effects`` None: the message goes to the dead letters, one effect.
        """
        if self.fault.at < no_fault().at:
            return  # the worker dies already while it handles this batch
        count = 1 if effects is None else len(effects)
        planned = self.crash_plan(*crash, effects or Effects()) if self.crash_plan is not None else None
        if planned is not None:
            self.fault = Fault(planned, count)
        elif self.config.crash_p and self._chance("crash", *crash) < self.config.crash_p:
            durable = int(self._chance("crash at", *crash) * (count + 1))
            # the flush sent the outputs, not the table write (Faust's producer buffer has no order)
            lose = not self.exactly_once and self._chance("lose", *crash) < 0.25  # a transaction is all or nothing
            self.fault = Fault(durable, count, lose_tables=lose)

    def _execute(self, task: Task | None, note: str, worker: int, work: Callable[[Executor], Any],
                 in_place: bool = False) -> bool:
        """Run the executor on this task's tables, and with ``in_place`` on those of the tasks of its worker it
        hands messages to; False when the worker crashed on the way."""
        handing = Handing(task) if task is not None else None
        names = TABLES if in_place else (task.tables if task is not None else ())
        tables = {name: SimTable(self, handing, name, note) for name in names} if handing is not None else {}
        local = self._local_delivery(handing, note, worker) if in_place and handing is not None else None
        executor = self.impl.executor(tables, SimOutbox(self, task, note), str, Backoff(), lambda: at_time(self.now),
                                      _no_sleep, internal=dict.fromkeys(INTERNAL_TOPICS, self.config.partitions),
                                      partitioner=_envelope_partition, local=local).for_loop(in_place=in_place)
        try:
            run_now(work(executor))
            run_now(executor.flush())  # before the offset commit, which comes between batches
            if self.fault.strikes:  # every effect made it: die before the offset commit
                raise Crash
        except Crash:
            fault = self.fault
            lost = "the flush lost the table writes, " if fault.lose_tables else ""
            self._crash(worker, f"during {note} after {fault.done}/{fault.effects} effects ({lost}not committed)")
            return False
        finally:
            self.fault = no_fault()
        return True

    def _local_delivery(self, handing: Handing, note: str, worker: int) -> LocalDelivery:
        """The partitions of ``worker``'s tasks are handled in place, each message by its task's watched handler."""
        owned = {(t.topic.name, t.partition): t for t in self.app_tasks if t.worker == worker and t.agent in OWNERS}

        @contextmanager
        def handed_to(topic: str, partition: int) -> Iterator[None]:
            before, handing.current = handing.current, owned[(topic, partition)]
            try:
                yield
            finally:
                handing.current = before

        def in_place(record: Incoming, read: Reader, now: datetime) -> Effects:
            where = f"{note} -> {handing.current.name} in place"
            return self._watched_for(handing.current, record, where, worker)(record, read, now)

        local = LocalDelivery(handed_to)
        for topic, _ in OWNERS.values():
            local.serve(topic, in_place)
        local.take(owned)
        return local

    def _commit(self, worker: int) -> None:
        """Faust's commit: flush the producer, commit the offsets; under exactly_once, commit the worker's
        transaction, which makes its tasks' changelog writes and sends visible, in the order they were made
        (tasks that handed messages over in place wrote the same keys), together with their offsets."""
        tasks = [task for task in self.tasks if task.worker == worker]
        self._commit_tasks(tasks)

    def _commit_tasks(self, tasks: list[Task]) -> None:
        """The transaction's writes and sends of these tasks in the order made, then their offsets."""
        for _, kind, name, key, value, note, partition in sorted(entry for task in tasks for entry in task.pending):
            if kind == "changelog":  # the partition of the task whose table it is (another's, if handed over)
                self.changelogs[name].append(key, value, note, partition)
            else:
                assert value is not None
                self._publish(name, key, value, note, exactly_once=True, partition=partition)
        for task in tasks:
            task.pending.clear()
            task.committed = task.position

    # --- durability and crashes ----------------------------------------------------------------

    def _publish(self, topic: str, key: str, value: bytes, note: str, exactly_once: bool,
                 partition: int | None = None) -> None:
        """An application's send becomes visible: a dead letter is recorded, a message written.

        A transactional producer is idempotent: only a send outside a transaction may be written twice.
        """
        if topic.endswith(".DLQ"):
            told = orjson.loads(value)
            origin = topic.removesuffix(".DLQ")
            self.dead_letters.append((origin, key, told["reason"]))
            self.dead_letter_origins.add((origin, int(told["partition"]), int(told["offset"]), told["index"]))
        elif exactly_once:
            self.topics[topic].append(key, value, note, partition)
        else:
            self._write(topic, key, value, note, _identity(value), partition)

    def _write(
        self, topic: str, key: str, value: bytes, note: str, identity: str, partition: int | None = None
    ) -> None:
        """A producer send; it may be written twice, at once or after a retry."""
        target = self.topics[topic]
        target.append(key, value, note, partition)
        if not self.config.dup_p:
            return
        sender = note.split(":")[0].split()[0]  # the agent, or "outside", "gateway", "timer"
        dup = (identity, sender, self._count(f"send {sender}", identity))
        if self._chance("dup", *dup) < self.config.dup_p:
            self.stats["duplicates"] += 1
            if self._chance("dup now", *dup) < 0.5:
                target.append(key, value, f"{note} (dup)", partition)
            else:
                self._later(10 * self._chance("dup delay", *dup), "send", (topic, key, value, f"{note} (retried)",
                                                                         partition))

    def _crash(self, worker: int, why: str) -> None:
        """The worker dies: its tasks restart from their committed offsets with tables from changelogs."""
        self.stats["crashes"] += 1
        self._log(f"CRASH w{worker} {why}")
        self.told[worker] = {}  # the timer's memory dies with the process
        for task in self.app_tasks:
            if task.worker == worker:
                self._reassign(task)

    def _reassign(self, task: Task) -> None:
        """A task whose worker is gone: from its committed offset, tables from the changelogs, on any worker."""
        task.position = task.committed
        task.pending.clear()  # the open transaction is aborted
        if self.exactly_once and not self.impl.drops_tables_after_abort:
            return  # RocksDB keeps writes whose transaction never committed
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
            for p in range(len(self.changelogs[name].partitions)):
                tables[name].update(self._restore(name, p))
        return Result(
            scenario=self.scenario,
            topics=self.topics,
            changelogs=self.changelogs,
            tables=tables,
            dead_letters=self.dead_letters,
            dead_letter_origins=self.dead_letter_origins,
            gateway=self.gateway,
            problems=self.problems,
            stats=self.stats,
            trace=self.trace,
            end_time=self.now,
        )

    def _clock(self) -> float:
        return self.now

    def _log(self, line: str) -> None:
        if self.tracing:
            self.trace.append(f"{self.now:10.3f} {line}")


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


def _identity(value: bytes) -> str:
    """The identity of a record: an envelope's is its first message's."""
    return _raw_identity(unpack(value)[0][1] if is_envelope(value) else value)


def _brief(value: bytes | None) -> str:
    """A short name of a message for traces; an envelope's messages in brackets."""
    if value is None:
        return "<tombstone>"
    if is_envelope(value):
        return "[" + "; ".join(_brief(each) for _, each in unpack(value)) + "]"
    body = orjson.loads(value)
    kind = body.get("kind") or body.get("event_type")
    about = [str(body[k]) for k in ("order_id", "sku", "customer_id", "quantity", "amount") if k in body]
    return f"{kind}({', '.join(about)})"


def _describe(effects: Effects) -> str:
    """The effects of one message, for traces."""
    parts = [f"{w.table}[{w.key}]{'=del' if w.value is None else ''}" for w in effects.writes]
    parts += [f"{send.topic}:{_brief(send.message.encode())}" for send in effects.sends]
    return ", ".join(parts) or "-"


def simulate(
    scenario: Scenario, impl: Handlers = REAL, trace: bool = False, crash_plan: CrashPlan | None = None
) -> Result:
    """Run a scenario once."""
    return Simulation(scenario, impl, trace, crash_plan).run()
