"""Exactly-once for a topology that feeds itself: one transaction per worker, fenced by the group (KIP-447).

faust-streaming 0.15.3 picks the transactional producer of a send from the *destination*
partition, but commits the transaction of the *source* partition. When an agent's output goes
to another topic or partition (the saga's commands, every changelog write) it lands in a
transaction nobody commits, and ``read_committed`` readers never see it: sagas stall. Here every
send made for the worker's inputs, and every changelog write, joins the worker's one transaction,
and each commit ends it with the offsets of all its inputs. Any other send (web views, timers) has
no input to commit with and goes out plainly: in a transaction nobody commits it would never be seen.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from functools import cached_property, partial
from pathlib import Path
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.producer.transaction_manager import TransactionState
from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP, FutureMessage, RecordMetadata, TransportT
from faust.types.tuples import HeadersArg

from app.commit_gate import CommitGate
from app.group_transactions import GroupFenced, commit_offsets_with_generation
from app.local_state import distrust_table_state
from tables.held_changelog import Table
from tables.recovery import Consumer
from tables.uncommitted import Uncommitted

#: whether a send is made for inputs being handled, though outside their handling (held envelopes)
_FOR_INPUTS: ContextVar[bool] = ContextVar("streamsaga_for_inputs", default=False)


@contextmanager
def sending_for_inputs() -> Iterator[None]:
    """Sends made inside join the worker's transaction (envelopes flushed after their inputs were handled)."""
    token = _FOR_INPUTS.set(True)
    try:
        yield
    finally:
        _FOR_INPUTS.reset(token)


class TransactionFailed(Exception):
    """The worker's transaction can neither commit nor go on: the worker stops, and rebuilds its tables."""


class WorkerTransactionManager(TransactionManager):
    """One transaction per worker at a time, holding every send made for its inputs and their offsets.

    Faust (and Kafka Streams before KIP-447) keep a transactional producer per input partition, so that a
    new owner of a partition fences the old one by reusing its id; a commit then ends one transaction per
    input partition. Here the group does the fencing: the offsets name the group generation
    (``app.group_transactions``), and a worker the group has moved on from cannot commit them.
    """

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
        """A send made for an input (or a table's changelog write) joins the worker's transaction."""
        from faust import current_event

        producer = self._producer()
        if partition is None:
            partition = self.consumer.key_partition(topic, key, partition)
        transactional = (_FOR_INPUTS.get() or current_event() is not None
                         or (partition is not None and topic in self._changelog_topics))
        return await producer.send(topic, key, value, partition, timestamp, headers,
                                   transactional_id=producer.transactional_id if transactional else None)

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        """Commit the worker's transaction once no message is half done (see :class:`CommitGate`).

        Table writes reach the producer through Faust's buffer, later than the message that made them;
        a commit before the buffer is drained would leave a change that is done (its offset committed)
        to the next transaction, which a crash aborts. Faust drains it before a plain offset commit,
        not before a transactional one: so we do. A worker that was fenced stops, as Faust stops on a
        fenced producer: its tables hold changes that were aborted, and it rebuilds them when started.
        """
        gate: CommitGate = self.app.commit_gate  # type: ignore[attr-defined]  # app.faust_app.App has one
        uncommitted: Uncommitted = self.app.uncommitted  # type: ignore[attr-defined]  # app.faust_app.App's
        async with gate.commit():
            producer = self._producer()
            written = set(uncommitted.written)
            try:
                await cast(DrainableBuffer, producer.buffer).drained()
                await producer.commit_worker_transaction(offsets, self.app.conf.id, start_new_transaction)
                uncommitted.committed(written)
            except (ProducerFenced, GroupFenced, TransactionFailed) as exc:
                self.log.warning("This worker was fenced, or its transaction failed, so it stops: %r", exc)
                distrust_table_state()
                await self.app.crash(exc)
        return True

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """After Faust's last commit of the revoked inputs: nothing may stay open into the next generation."""
        await super().on_partitions_revoked(revoked)
        try:
            await self._producer().abort_worker_transaction()
        except TransactionFailed:
            distrust_table_state()
            raise
        finally:
            self._forget_uncommitted()

    def _forget_uncommitted(self) -> None:
        """What was written since the last commit is aborted: held changelog writes and the agents' held sends
        dropped, the partitions' local state marked for a rebuild at their next recovery (``tables.uncommitted``)."""
        dropped = cast(CommitGate, self.app.commit_gate).drop_held()  # type: ignore[attr-defined]
        if dropped:
            self.log.warning("Dropped %s held sends of inputs whose transaction was aborted at a rebalance; their "
                             "partitions' next owners handle those inputs again", dropped)
        lost = cast(Uncommitted, self.app.uncommitted).aborted()  # type: ignore[attr-defined]
        if not lost:
            return
        for table in self.app.tables.values():
            cast(Table, table).drop_held_changelog()
        distrust_table_state()  # a stop before the rebuild must not keep them either
        self.log.warning("Changes to %s table partitions were aborted at a rebalance; their local state is "
                         "rebuilt from the changelog when next taken up", len(lost))

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP]) -> None:
        """With inputs assigned, the worker's transaction is open (the first one starts its producer)."""
        if assigned:
            await self._producer().begin_worker_transaction()

    def _producer(self) -> Producer:
        return cast(Producer, self.producer)

    @cached_property
    def _changelog_topics(self) -> frozenset[str]:
        """Names of the tables' changelog topics (all declared before the worker sends anything)."""
        return frozenset(table.changelog_topic.get_topic_name() for table in self.app.tables.values())


class DrainableBuffer(ProducerBuffer):
    """Faust's producer buffer, which can also say when nothing is left in it or on its way out of it.

    Faust's own ``flush`` returns once the queue is empty, while the last message taken from it may
    still be on its way to the producer: a transaction committed then misses it.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self._drained = asyncio.Event()
        self._drained.set()
        self._failure: BaseException | None = None

    def put(self, fut: FutureMessage) -> None:
        """Buffer a message (a table's changelog record)."""
        self._drained.clear()
        super().put(fut)

    async def _send_pending(self, fut: FutureMessage) -> None:
        try:
            await super()._send_pending(fut)
        except BaseException as exc:
            self._failure = exc  # Faust's buffer task ends here: nothing in it will be sent
            distrust_table_state()  # and the tables hold changes their changelogs will never have
            self._drained.set()
            raise
        finally:
            if not self.size:
                self._drained.set()

    async def drained(self) -> None:
        """Until every buffered message has been handed to the producer; if the buffer failed, why."""
        await self._drained.wait()
        if self._failure is not None:
            raise TransactionFailed(f"a table's changelog write could not be sent: {self._failure!r}")


#: how large a record batch of held changelog writes may grow: well under Kafka's default 1 MiB message limit
HELD_BATCH_BYTES = 512 * 1024
#: aiokafka's default is 100
TRANSACTIONAL_RETRY_BACKOFF_MS = 10
#: how long an open transaction of a worker that died holds back readers; a worker started again from the same
#: data directory fences it at once. Kafka Streams' 10 s is shorter than a broker failure lasts for a transaction
#: with a write led by the failed broker (9 s until the controller drops it, then a new leader): the coordinator
#: aborted such a transaction, and the fenced worker stopped
TRANSACTION_TIMEOUT_MS = 20_000
#: where a worker keeps the id its transactions carry, beside its tables (which a crash may wipe)
TRANSACTIONAL_ID_FILE = "transactional-id"


def worker_transactional_id(group_id: str, data_dir: Path) -> str:
    """The worker's transactional id, the same across its restarts: the new run fences the old one's transaction.

    Kept in the data directory, which one worker uses at a time (its RocksDB tables are locked there).
    """
    path = data_dir / TRANSACTIONAL_ID_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{group_id}-{uuid.uuid4()}\n")
    return path.read_text().strip()


class Producer(faust_aiokafka.Producer):
    """Faust's Kafka producer with a :class:`DrainableBuffer` and one transactional producer for the worker."""

    def __init__(self, transport: TransportT, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        super().__init__(transport, loop=loop, **kwargs)
        buffer = DrainableBuffer(loop=self.loop, beacon=self.beacon)
        buffer.app = self.app
        self.buffer = buffer
        self._transaction_producers = {}  # Faust's are class attributes, shared by every app in a process
        self._trn_locks = {}
        self._starting = asyncio.Lock()
        self._transactional_id: str | None = None

    @property
    def transactional_id(self) -> str:
        """The worker's transactional id (``worker_transactional_id``)."""
        if self._transactional_id is None:
            settings = self.app.settings  # type: ignore[attr-defined]  # app.faust_app.App has them
            self._transactional_id = worker_transactional_id(self.app.conf.id, settings.data_dir)
        return self._transactional_id

    def _settings_extra(self) -> Mapping[str, Any]:
        """Idempotent acks=all writes under either guarantee; under exactly_once a short retry backoff and timeout.

        A Kafka 4 broker verifies that a transactional write's partition is in the open transaction; right
        after a commit the coordinator may still be writing markers, and the write fails with a retriable
        NOT_ENOUGH_REPLICAS (aiokafka#1172, KAFKA-14904). aiokafka then waits 100 ms before it retries: with
        a commit every 100 ms that held up most transactions' first writes.
        """
        extra = {"acks": "all", "enable_idempotence": True}  # under at_least_once too: a retried write is not doubled
        if self.app.in_transaction:
            extra["retry_backoff_ms"] = TRANSACTIONAL_RETRY_BACKOFF_MS
            extra["transaction_timeout_ms"] = max(TRANSACTION_TIMEOUT_MS, int(self.app.conf.broker_commit_interval
                                                                              * 3000))
        return extra

    async def begin_worker_transaction(self) -> None:
        """Open the worker's transaction if none is; the first call starts the producer, fencing an earlier run."""
        async with self._starting:
            tid = self.transactional_id
            producer = self._transaction_producers.get(tid)
            if producer is None:
                producer = self._new_producer(transactional_id=tid)
                commit_offsets_with_generation(producer._sender, cast(Consumer, self.app.consumer).group_metadata)
                await producer.start()
                self._transaction_producers[tid] = producer
                self._trn_locks[tid] = asyncio.Lock()
                self.log.info("Transactional producer %s started", tid)
            async with self._trn_locks[tid]:
                if not producer._txn_manager.is_in_transaction():  # aiokafka keeps the state there
                    await producer.begin_transaction()

    async def commit_worker_transaction(self, offsets: Mapping[TP, int], group_id: str,
                                        start_new_transaction: bool) -> None:
        """Commit the worker's transaction with the offsets of its inputs; a fenced one is aborted, then raised."""
        async with self._worker_transaction() as producer:
            if producer is None:
                self.log.warning("Commit of %s offsets before the transactional producer started", len(offsets))
                return
            txn = producer._txn_manager
            if txn.state is TransactionState.ABORTABLE_ERROR:  # a request of the transaction was refused
                await producer.abort_transaction()
                raise TransactionFailed("a request of the transaction was refused; it was aborted")
            if not txn.is_in_transaction():
                # Faust's last commit before a stop ends the transaction without starting a new one; a
                # timer commit after it has nothing it may commit (nothing could be sent outside one)
                self.log.info("The transaction has ended; offsets %s are left to the next owner", dict(offsets))
                return
            try:
                await producer.send_offsets_to_transaction(offsets, group_id)
            except GroupFenced:
                await producer.abort_transaction()
                raise
            await producer.commit_transaction()
            if start_new_transaction:
                await producer.begin_transaction()

    async def send_held(self, topic: str, partition: int, messages: list[FutureMessage]) -> None:
        """Held changelog writes to ``topic[partition]`` in the worker's transaction, packed into as few record
        batches as fit (aiokafka's own size, 16 KiB, made a commit wait a round trip per further batch of a
        partition: a hot sku's value is several KiB); each message's future is resolved (and its callback
        run) when its batch is written. Under the transaction's lock, as Faust's own transactional sends are."""
        async with self._worker_transaction() as producer:
            if producer is None:
                raise TransactionFailed(f"changelog writes held for {topic}[{partition}] before the transactional "
                                        "producer started")
            pending = messages
            while pending:
                batch = BatchBuilder(HELD_BATCH_BYTES, producer._message_accumulator._compression_type,
                                     is_transactional=True)
                taken = 0
                for fut in pending:  # the first always fits: a batch takes one record of any size
                    if batch.append(key=fut.message.key, value=fut.message.value, timestamp=None) is None:
                        break
                    taken += 1
                if not taken:  # not with aiokafka 0.14; another version must not make this loop forever
                    raise TransactionFailed(f"a changelog record for {topic}[{partition}] did not fit a record batch")
                sent = await producer.send_batch(batch, topic, partition=partition)
                sent.add_done_callback(partial(_written, pending[:taken]))
                pending = pending[taken:]

    async def abort_worker_transaction(self) -> None:
        """Abort the worker's open transaction, if any: it holds no input whose offset it could commit."""
        async with self._worker_transaction() as producer:
            if producer is None or not producer._txn_manager.is_in_transaction():
                return
            if not producer._txn_manager.is_empty_transaction():
                self.log.warning("Aborting a transaction with sends but no offsets at a rebalance")
            await producer.abort_transaction()

    @asynccontextmanager
    async def _worker_transaction(self) -> AsyncIterator[AIOKafkaProducer | None]:
        """The worker's transactional producer under its lock (None before it started); a failed one raises."""
        tid = self.transactional_id
        producer = self._transaction_producers.get(tid)
        if producer is None:
            yield None
            return
        async with self._trn_locks[tid]:
            if producer._txn_manager.is_fatal_error():
                raise TransactionFailed("the transactional producer was fenced (its transaction timed out, or a "
                                        "newer run of this worker started) or failed")
            yield producer


def _written(messages: list[FutureMessage], sent: asyncio.Future[Any]) -> None:
    """The futures of the messages of one written batch, in order from its base offset; or its failure."""
    if sent.cancelled() or sent.exception() is not None:
        failure = sent.exception() or asyncio.CancelledError()
        for fut in messages:
            if not fut.done():
                fut.set_exception(failure)
        return
    base = sent.result()
    tp = TP(base.topic, base.partition)
    for n, fut in enumerate(messages):
        fut.set_result(RecordMetadata(base.topic, base.partition, tp, base.offset + n, base.timestamp,
                                      base.timestamp_type))
        if fut.message.callback is not None:
            fut.message.callback(fut)


class Transport(faust_aiokafka.Transport):
    """Faust's Kafka transport with our consumer, producer and transaction manager."""

    Consumer = Consumer
    Producer = Producer
    TransactionManager = WorkerTransactionManager
