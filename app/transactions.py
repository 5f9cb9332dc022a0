"""Exactly-once for a topology that feeds itself: join the transaction of the message being processed.

faust-streaming 0.15.3 picks the transactional producer of a send from the *destination*
partition, but commits the transaction of the *source* partition. When an agent's output goes
to another topic or partition (the saga's commands, every changelog write) it lands in a
transaction nobody commits, and ``read_committed`` readers never see it: sagas stall. Kafka
Streams' rule is one producer per input task; this manager follows it. Changelog writes are
flushed from Faust's producer buffer, outside the event's context; they go to the partition of
the event that caused them, so the destination names the right transaction, as Faust does.
Any other send with no message being processed (web views, timers) has no transaction to
join and goes out plainly: in a transaction nobody commits it would never be seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP, FutureMessage, RecordMetadata, TransportT
from faust.types.tuples import HeadersArg

from tables.recovery import Consumer

Flusher = Callable[[], Awaitable[None]]
#: the input partition whose transaction a send joins, when it is sent outside that input's handling
_SOURCE: ContextVar[TP | None] = ContextVar("streamsaga_source", default=None)


@contextmanager
def sending_for(source: TP | None) -> Iterator[None]:
    """Sends made inside join the transaction of ``source`` (envelopes flushed after their inputs)."""
    token = _SOURCE.set(source)
    try:
        yield
    finally:
        _SOURCE.reset(token)


class CommitGate:
    """Keeps a commit out of the middle of a message, and sends what the agents hold before it.

    Faust commits on a timer, whatever the agents are doing. A commit between a message's table
    writes and its sends would commit the change but leave the sends in the next transaction; a
    crash before that one commits aborts them, and the redelivered message then finds its change
    done and sends nothing. So a commit waits until no message is half done, and no message starts
    while a commit runs. Sends an agent holds in envelopes (``agents.envelopes``) belong to inputs
    whose offsets the commit may hold: each agent's flusher sends them first.
    """

    def __init__(self) -> None:
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()
        self._flushers: set[Flusher] = set()
        self._last: list[Flusher] = []

    def always(self, flusher: Flusher) -> None:
        """``flusher`` runs before every commit, after the agents' (a table's held changelog writes)."""
        self._last.append(flusher)

    @contextmanager
    def flushing(self, flusher: Flusher) -> Iterator[None]:
        """While inside, ``flusher`` sends what an agent holds before each commit."""
        self._flushers.add(flusher)
        try:
            yield
        finally:
            self._flushers.discard(flusher)

    @asynccontextmanager
    async def message(self) -> AsyncIterator[None]:
        """Around the whole handling of one message."""
        await self._open.wait()
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    @asynccontextmanager
    async def commit(self) -> AsyncIterator[None]:
        """Around a commit: new messages wait, the ones under way finish first, then what is held is sent."""
        self._open.clear()
        try:
            await self._idle.wait()
            for flusher in [*self._flushers, *self._last]:
                await flusher()
            yield
        finally:
            self._open.set()

    async def flush(self) -> None:
        """Send what the agents hold, between messages (before an at_least_once commit)."""
        async with self.commit():
            pass


class SourceTransactionManager(TransactionManager):
    """Send within the transaction of the source partition, the one the commit will close."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: HeadersArg | None,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[RecordMetadata]:
        """Route the send to the producer of the event being processed, if any."""
        from faust import current_event

        source = _SOURCE.get()
        if source is None:
            event = current_event()
            source = event.message.tp if event is not None else None
        if partition is None:
            partition = self.consumer.key_partition(topic, key, partition)
        if source is None and topic in self._changelog_topics() and partition is not None:
            source = TP(topic, partition)
        transactional_id = None
        if source is not None:
            group = self.app.assignor.group_for_topic(source.topic)
            transactional_id = f"{self.app.conf.id}-{group}-{source.partition}"
        return await self.producer.send(
            topic, key, value, partition, timestamp, headers, transactional_id=transactional_id
        )

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        """Commit the transactions once no message is half done (see :class:`CommitGate`).

        Table writes reach the producer through Faust's buffer, later than the message that made them;
        a commit before the buffer is drained would leave a change that is done (its offset committed)
        to the next transaction, which a crash aborts. Faust drains it before a plain offset commit,
        not before a transactional one: so we do.
        """
        gate: CommitGate = self.app.commit_gate  # type: ignore[attr-defined]  # app.faust_app.App has one
        async with gate.commit():
            buffer: DrainableBuffer = self.producer.buffer  # type: ignore[assignment]  # our Producer's
            await buffer.drained()
            return await super().commit(offsets, start_new_transaction)

    def _changelog_topics(self) -> set[str]:
        """Names of the tables' changelog topics."""
        return {table.changelog_topic.get_topic_name() for table in self.app.tables.values()}


class DrainableBuffer(ProducerBuffer):
    """Faust's producer buffer, which can also say when nothing is left in it or on its way out of it.

    Faust's own ``flush`` returns once the queue is empty, while the last message taken from it may
    still be on its way to the producer: a transaction committed then misses it.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self._drained = asyncio.Event()
        self._drained.set()

    def put(self, fut: FutureMessage) -> None:
        """Buffer a message (a table's changelog record)."""
        self._drained.clear()
        super().put(fut)

    async def _send_pending(self, fut: FutureMessage) -> None:
        try:
            await super()._send_pending(fut)
        finally:
            if not self.size:
                self._drained.set()

    async def drained(self) -> None:
        """Until every buffered message has been handed to the producer."""
        await self._drained.wait()


#: aiokafka's default is 100
TRANSACTIONAL_RETRY_BACKOFF_MS = 10


class Producer(faust_aiokafka.Producer):
    """Faust's Kafka producer with a :class:`DrainableBuffer`, committing its transactions side by side."""

    def __init__(self, transport: TransportT, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        super().__init__(transport, loop=loop, **kwargs)
        buffer = DrainableBuffer(loop=self.loop, beacon=self.beacon)
        buffer.app = self.app
        self.buffer = buffer

    def _settings_extra(self) -> Mapping[str, Any]:
        """Faust's idempotent, acks=all settings under exactly_once, and a short retry backoff.

        A Kafka 4 broker verifies that a transactional write's partition is in the open transaction; right
        after a commit the coordinator may still be writing markers, and the write fails with a retriable
        NOT_ENOUGH_REPLICAS (aiokafka#1172, KAFKA-14904). aiokafka then waits 100 ms before it retries: with
        a commit every 100 ms that held up most transactions' first writes.
        """
        extra = dict(super()._settings_extra())
        if self.app.in_transaction:
            extra["retry_backoff_ms"] = TRANSACTIONAL_RETRY_BACKOFF_MS
        return extra

    async def commit_transactions(
        self, tid_to_offset_map: Mapping[str, Mapping[TP, int]], group_id: str, start_new_transaction: bool = True
    ) -> None:
        """Commit every input partition's transaction at once.

        Faust commits them one after another, three round trips each (offsets, end, begin), while the
        commit gate holds every agent: with a transaction per input partition that was most of a commit
        interval. Each transaction has its own producer and id, so they need no order among them.
        """
        await asyncio.gather(*(self._commit_one(tid, offsets, group_id, start_new_transaction)
                               for tid, offsets in tid_to_offset_map.items()))

    async def _commit_one(
        self, transactional_id: str, offsets: Mapping[TP, int], group_id: str, start_new_transaction: bool
    ) -> None:
        """Faust's commit of one transaction: its input offsets, its end, and the next one's beginning."""
        async with self._trn_locks[transactional_id]:
            producer = self._transaction_producers.get(transactional_id)
            if producer is None:
                self.log.warning("Commit invoked for unknown transaction %s", transactional_id)
                return
            if not producer._txn_manager.is_in_transaction():  # aiokafka keeps the state there
                # Faust's last commit before a stop ends the transactions without starting new ones; a
                # timer commit after it has nothing it may commit (nothing could be sent outside one)
                self.log.info("Transaction %s has ended; its offsets are left to the next owner", transactional_id)
                return
            await producer.send_offsets_to_transaction(offsets, group_id)
            await producer.commit_transaction()
            if start_new_transaction:
                await producer.begin_transaction()


class Transport(faust_aiokafka.Transport):
    """Faust's Kafka transport with our consumer, producer and transaction manager."""

    Consumer = Consumer
    Producer = Producer
    TransactionManager = SourceTransactionManager
