"""The one place that touches tables and topics: apply a handler's effects, writes first, then sends.

Writes come first so that a crash between them is repaired by the redelivery: the handler then finds
its change already stored, treats the message as a duplicate and sends everything again, with the
same derived ids. A message the handler rejects goes to its dead-letter topic; one that fails
unexpectedly is retried with backoff and then dead-lettered. The worker runs this with Faust's
tables and topics (``agents/wiring.py``); the simulation runs it with in-memory ones.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from agents.envelopes import Envelopes, Headers, Outbox, Partitioner, partition_for
from agents.local_delivery import MAX_IN_PLACE, LocalDelivery
from agents.retry import Backoff, Sleep, retried
from models import stats
from models.effects import INLINE_OFFSET, Effects, Incoming
from models.events import BadMessage, format_time, utc_now
from models.handlers import Handler
from models.measures import DeadLettered
from models.topics import dead_letter_name

log = logging.getLogger(__name__)
__all__ = ["Executor", "Headers", "Observer", "Outbox", "Table"]


class Table(Protocol):
    """What the executor needs of a table: a key-value map of bytes."""

    def get(self, key: str) -> bytes | None: ...
    def __setitem__(self, key: str, value: bytes) -> None: ...
    def __delitem__(self, key: str) -> None: ...


class Observer(Protocol):
    """Who hears what the executor did, for the metrics: effects applied, retries, dead letters."""

    def applied(self, effects: Effects) -> None: ...
    def retried(self, topic: str) -> None: ...
    def dead_lettered(self, topic: str, failure_class: str) -> None: ...


class Unobserved:
    """No one listens (the simulation, unit tests)."""

    def applied(self, effects: Effects) -> None:
        """Nothing."""

    def retried(self, topic: str) -> None:
        """Nothing."""

    def dead_lettered(self, topic: str, failure_class: str) -> None:
        """Nothing."""


class Executor:
    """Applies effects to ``tables`` and ``outbox``; ``topic_name`` turns a logical topic into its full name.

    Sends to the ``internal`` topics (full name -> partitions) are held in envelopes until :meth:`flush`;
    each loop that applies effects has its own (:meth:`for_loop`). With ``measure``, a dead letter is
    counted in the windows of ``GET /stats`` as well. With ``local``, a loop may hand what it sends to the
    partitions this worker owns straight to their handlers (:meth:`deliver_in_place`).
    """

    def __init__(
        self,
        tables: Mapping[str, Table],
        outbox: Outbox,
        topic_name: Callable[[str], str],
        backoff: Backoff,
        clock: Callable[[], datetime] = utc_now,
        sleep: Sleep = asyncio.sleep,
        measure: bool = True,
        observer: Observer | None = None,
        internal: Mapping[str, int] | None = None,
        partitioner: Partitioner = partition_for,
        local: LocalDelivery | None = None,
    ) -> None:
        self.tables, self.outbox, self.topic_name = tables, outbox, topic_name
        self.backoff, self.clock, self.sleep = backoff, clock, sleep
        self.measure, self.observer = measure, observer or Unobserved()
        self.envelopes = Envelopes(outbox, internal or {}, partitioner)
        self.local = local

    def for_loop(self, in_place: bool = False) -> Executor:
        """This executor with envelopes of its own, for one loop: what one loop holds, it flushes.

        With ``in_place`` (a loop that handles messages, never the timer) what it sends to a partition handled
        in place waits for :meth:`deliver_in_place`.
        """
        clone = copy.copy(self)
        owns = self.local.owns if in_place and self.local is not None else None
        clone.envelopes = Envelopes(self.outbox, self.envelopes.internal, self.envelopes.partitioner, owns=owns)
        return clone

    async def deliver_in_place(self) -> None:
        """Hand each message held for a partition handled in place to its handler, in the order sent, until
        none is left (what they send in turn included); past ``MAX_IN_PLACE`` the rest go through Kafka."""
        queue, local = self.envelopes.in_place, self.local
        handed = 0
        while queue:
            assert local is not None, "only a loop of a LocalDelivery holds messages in place"
            topic, partition, key, value = queue.popleft()
            if handed == MAX_IN_PLACE:
                log.warning("%d messages handed over in place for one input; the rest go through Kafka", handed)
            if handed >= MAX_IN_PLACE:
                await self.envelopes.hold(topic, partition, key, value)
            else:
                record = Incoming(topic, partition, INLINE_OFFSET, key, value, self.clock().timestamp())
                with local.context(topic, partition):
                    await self.process(local.handlers[topic], record)
            handed += 1

    async def flush(self) -> None:
        """Send what the envelopes hold."""
        await self.envelopes.flush()

    def read(self, table: str, key: str) -> bytes | None:
        """A stored value, for handlers."""
        return self.tables[table].get(key)

    async def apply(self, effects: Effects) -> None:
        """Every table write, then every send, in the order the handler gave them."""
        for write in effects.writes:
            if write.value is None:
                del self.tables[write.table][write.key]
            else:
                self.tables[write.table][write.key] = write.value
        for send in effects.sends:
            await self.envelopes.send(
                self.topic_name(send.topic), send.key.encode(), send.message.encode(), list(send.headers.items())
            )
        self.observer.applied(effects)

    async def process(self, handler: Handler, record: Incoming) -> None:
        """Handle one record: apply its effects, retried on failure; dead-letter what cannot be done."""
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                self.observer.retried(record.topic)
            await self.apply(handler(record, self.read, self.clock()))

        what = f"{record.topic}[{record.partition}]@{_place(record)}"
        try:
            await retried(attempt, self.backoff, what, self.sleep)
        except BadMessage as exc:
            await self.dead_letter(record, exc.reason, type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - whatever still fails is recorded, never dropped
            log.exception("giving up on %s", what)
            await self.dead_letter(record, str(exc) or repr(exc), type(exc).__name__)

    async def dead_letter(self, record: Incoming, reason: str, failure_class: str) -> None:
        """The original key and value to ``<topic>.DLQ``, with the contract's headers; counted first.

        Counted before it is sent: a redelivery after a crash between the two sends it again but
        finds it counted (``models.stats.count``).
        """
        log.warning("dead letter from %s[%s]@%s: %s: %s",
                    record.topic, record.partition, _place(record), failure_class, reason)
        if self.measure:
            measure = DeadLettered(datetime.fromtimestamp(record.timestamp, UTC), record.topic)
            writes = stats.count(self.read, record.topic, record.partition, record.position, self.clock(), [measure])
            await self.apply(Effects(writes=tuple(writes)))
        self.observer.dead_lettered(record.topic, failure_class)
        headers = [
            ("original.topic", record.topic.encode()),
            ("original.partition", str(record.partition).encode()),
            ("original.offset", str(record.offset).encode()),
            ("failure.reason", reason.encode("utf-8", "replace")),
            ("failure.timestamp", format_time(self.clock()).encode()),
            ("failure.class", failure_class.encode()),
        ]
        if record.index is not None:
            headers.append(("original.index", str(record.index).encode()))
        await self.outbox.send(dead_letter_name(record.topic), record.key, record.value, headers)


def _place(record: Incoming) -> str:
    """A record's offset, and a message's place in its envelope."""
    return str(record.offset) if record.index is None else f"{record.offset}#{record.index}"
