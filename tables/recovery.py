"""How a worker takes up its partitions after a rebalance or restart: three mends to faust-streaming 0.15.3;
the consumer also skips the app's own outputs (``app.own_outputs``).

- Faust ends a recovery by resuming the input partitions and only then seeking them to their committed
  offsets. The fetcher is already running (it read the changelogs), so agents process records, and the
  commit timer commits, while the seek is under way; the read offset then lands past records fetched
  but never processed, which Faust counts as a gap and commits. Inputs were lost for good (sagas never
  created, or waiting for a reply nobody would process), under either guarantee. We seek first.
- A new assignment is paused only after a few awaits; we pause it at once.
- Under exactly_once the end of a changelog partition is read from the last fetch response, which a
  partition just assigned has not had: we ask the broker.
- A fetch still waiting in the consumer thread when a rebalance stops Faust's fetcher goes on after the
  rebalance and takes the first records of the new assignment, past the seek, for a caller who is gone.
  Those partitions were never consumed again (orders stuck after a group member died). We rewind them.
- Faust's fetch is handed its live set of active partitions, and drains every partition aiokafka read
  ahead when the set is empty, as it is a moment at the end of a recovery: records of inputs still paused
  were dropped, and where the seek had come first they were lost (orders placed while a worker was down,
  never handled). The fetch takes a copy, and gives back what Faust would not deliver.
- Under exactly_once Faust's recovery of a changelog waits out two 5 s quiet spells after its last record
  (the changelog ends with a commit marker no consumer is given), then takes a partition whose position
  is at its end for done, though records fetched may not be applied yet, and its end is the last stable
  offset read once when the recovery began. The spells are 0.5 s, and a partition is at its end only
  when no record fetched is still on its way to recovery (``ChangelogQueue``), its position has reached
  the last stable offset of its latest fetch, and no transaction is undecided on it (the high watermark
  is that offset): what an earlier owner commits late is read, and one that died is waited for until the
  broker aborts its transaction (``ConsumerThread.at_stable_end``).
- Under exactly_once the internal partitions handled in place (``agents.local_delivery``) are those of an
  assignment once it is recovered, and none from the moment a rebalance begins.
- Under exactly_once a transaction's offsets name the generation and member of the assignment the worker
  holds, never the coordinator's state of the moment (see ``RebalanceListener``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, cast

import aiokafka
from aiokafka.consumer.group_coordinator import GroupCoordinator
from faust.tables import TableManager as FaustTableManager
from faust.tables.recovery import Recovery as FaustRecovery
from faust.transport.consumer import RecordMap
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, CollectionT
from faust.types.tuples import ack_lock
from mode import Service
from mode.utils.queues import ThrowableQueue

from agents.local_delivery import LocalDelivery
from app.commit_gate import commit_due
from app.group_transactions import NO_GENERATION, fetch_stable_offsets
from app.own_outputs import SkippedAcks, SkippingScheduler
from tables.uncommitted import wipe_partition


class Recovery(FaustRecovery):
    """Faust's recovery, with the seek to committed offsets before the input partitions resume."""

    def _add(self, table: CollectionT, tp: TP, offsets: Counter[TP]) -> None:
        """Faust's taking up of a changelog partition, once emptied if an aborted transaction wrote to it:
        recovery then rebuilds it from the committed changelog (``tables.uncommitted``)."""
        uncommitted = self.app.uncommitted  # type: ignore[attr-defined]  # app.faust_app.App's
        if uncommitted.take_dirty([tp]):
            keys = wipe_partition(table, tp.partition)
            self.log.warning("Rebuilding %s[%s] from its changelog: it held aborted changes (%s keys dropped)",
                             tp.topic, tp.partition, keys)
        super()._add(table, tp, offsets)

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """The end of a recovery that read changelogs: tables told, inputs seeked, then resumed."""
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table],
                                                              self.standbys_for_table[table]))
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        if await self._seek_then_resume(generation_id):
            await self._ready(standbys_ready=not self.app.assignor.assigned_standbys())

    async def _resume_streams(self, generation_id: int = 0) -> None:
        """The end of a recovery with nothing to read: inputs seeked, then resumed."""
        await self.app.on_rebalance_complete.send()
        if await self._seek_then_resume(generation_id):
            await self._ready(standbys_ready=True)

    async def _seek_then_resume(self, generation_id: int) -> bool:
        """Seek the input partitions while they are paused, then resume them; False if the group rebalanced."""
        consumer = self.app.consumer
        assignment = consumer.assignment()
        if assignment and self.app.consumer_generation_id == generation_id:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again: generation %s, not %s",
                             self.app.consumer_generation_id, generation_id)
            return False
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        return True

    async def _ready(self, standbys_ready: bool) -> None:
        """Let the streams flow and tell the tables and the app that this worker is ready."""
        self.completed.set()
        self.app.flow_control.resume()
        self.app.consumer.resume_flow()
        await self.app._fetcher.maybe_start()  # type: ignore[attr-defined]  # faust.App has it
        if self.app.in_transaction:
            self._local_delivery().take((tp.topic, tp.partition) for tp in self.app.consumer.assignment())
        self.tables.on_actives_ready()
        if standbys_ready:
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")


    def _local_delivery(self) -> LocalDelivery:
        return cast(LocalDelivery, self.app.local_delivery)  # type: ignore[attr-defined]  # app.faust_app.App's


#: how long recovery waits for a changelog record, once every one fetched has reached it, before it
#: counts a quiet spell
RECOVERY_QUIET_S = 0.5
#: Faust's wait for each quiet spell, still taken while a fetched record has not reached recovery
FAUST_QUIET_S = 5.0


class ChangelogQueue(ThrowableQueue):
    """Faust's queue of changelog records for recovery, which knows the records fetched and not yet applied.

    Under exactly_once a changelog ends past its last record: its last offset is a transaction's commit
    marker, which no consumer is given. Faust ends the recovery of such a partition after two quiet
    spells in a row, each a 5 s wait for this queue, once the consumer's position is at its end: every
    recovery under exactly_once stood still 10 s after reading its last record (a worker restarted or
    taking over partitions). But a position at the end says only that the records were fetched, not
    that recovery has applied them, and Faust counts a record below the end it took for done as seen
    and drops it: with spells of 0.5 s alone, tables were left without the changelog's last records
    (a restarted worker found no stock). So the consumer thread names each changelog record it hands
    to Faust, recovery's taking of it from here crosses it off, and the consumer answers a position
    for a partition with records in between as not there yet (``Consumer.position``). A quiet spell
    lasts 0.5 s when no record is in between, Faust's 5 s otherwise.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (partition, offset) of each record handed to Faust and not taken yet -> when it was handed
        self._in_flight: dict[tuple[TP, int], float] = {}

    def handed(self, tp: TP, offsets: list[int]) -> None:
        """The consumer thread gave Faust these records of changelog partition ``tp``."""
        now = time.monotonic()
        self._in_flight.update(((tp, offset), now) for offset in offsets)

    def clear(self) -> None:
        """Faust's clearing when flow resumes (a recovery begins or ends): what was in between goes too."""
        super().clear()
        self._in_flight.clear()

    def pending(self, tp: TP | None = None) -> bool:
        """Whether a record (of ``tp``) handed to Faust has not been taken by recovery yet.

        One handed more than Faust's 5 s spell ago was dropped on its way (Faust drops a record of a partition
        paused or seeked meanwhile): it is forgotten, and recovery waits as long as Faust's own would have.
        """
        stale = time.monotonic() - FAUST_QUIET_S
        in_flight = list(self._in_flight.items())
        for key, handed_at in in_flight:
            if handed_at < stale:
                self._in_flight.pop(key, None)
        return any(tp is None or each == tp for (each, _), handed_at in in_flight if handed_at >= stale)

    async def get(self) -> Any:
        """The next record; ``asyncio.TimeoutError`` after a quiet spell, as Faust's own wait raises."""
        quiet = 0.0
        while True:
            try:
                event = await asyncio.wait_for(super().get(), RECOVERY_QUIET_S)
            except TimeoutError:
                quiet += RECOVERY_QUIET_S
                if not self.pending() or quiet >= FAUST_QUIET_S:
                    raise
            else:
                message = event.message
                self._in_flight.pop((message.tp, message.offset), None)
                return event


class TableManager(FaustTableManager):
    """Faust's table manager with our :class:`Recovery` and :class:`ChangelogQueue`."""

    @property
    def recovery(self) -> Recovery:
        """The recovery service of this worker's tables."""
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return cast(Recovery, self._recovery)

    @property
    def changelog_queue(self) -> ThrowableQueue:
        """The changelog records recovery applies (Faust's queue, with quiet spells shortened when safe)."""
        if self._changelog_queue is None:
            self._changelog_queue = ChangelogQueue(maxsize=self.app.conf.stream_buffer_maxsize,
                                                   flow_control=self.app.flow_control, clear_on_resume=True)
        return self._changelog_queue


#: how long the broker may hold a worker's fetch when there is nothing new to read
FETCH_MAX_WAIT_MS = 100
#: how long a changelog's recovery waits for a transaction undecided on it: longer than the broker takes to abort a
#: dead worker's (``app.transactions.TRANSACTION_TIMEOUT_MS``, 20 s), bounded against a hanging one
UNDECIDED_WAIT_S = 30.0


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, asking the broker where each partition ends, and for stable offsets only.

    Under exactly_once Faust answers with the last stable offset of the last fetch response, which a
    partition just assigned has not had yet: recovery then takes its changelog for empty. With data kept
    locally that crashed the worker ("persisted offset ... higher than ... highwater (327 > -1)"), and a
    store left behind the changelog would be taken as recovered. A ListOffsets request answers for the
    consumer's isolation level: the last stable offset under read_committed, the high watermark otherwise.
    """

    async def on_start(self) -> None:
        """Faust's start; under exactly_once the group's committed offsets are read only once stable."""
        #: (generation, changelog partition) -> when its recovery first found a transaction undecided on it
        self._undecided_since: dict[tuple[int, TP], float] = {}
        await super().on_start()
        coordinator = self._ensure_consumer()._coordinator
        if self.consumer.in_transaction and isinstance(coordinator, GroupCoordinator):
            fetch_stable_offsets(coordinator)

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> aiokafka.AIOKafkaConsumer:
        """Faust's consumer, whose fetches the broker holds at most ``FETCH_MAX_WAIT_MS`` (Faust: 1.5 s).

        A broker answers the requests of one connection in turn, so every offset lookup of a recovery
        waited behind the long poll of the fetch before it.
        """
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        return cast(Mapping[TP, int], await self._ensure_consumer().end_offsets(partitions))

    async def at_stable_end(self, tp: TP) -> bool:
        """Whether changelog partition ``tp`` is read to its end and nothing more can be committed to it.

        Its position has reached the last stable offset of its latest fetch, and the high watermark is that
        offset: no transaction that wrote to it is undecided. An earlier owner's transaction still open (one
        that died: the broker aborts it after the transaction timeout) holds the end back, so recovery reads
        what such a transaction commits, and never takes an end that was read before it committed. A
        transaction undecided longer than ``UNDECIDED_WAIT_S`` is given up on, with a warning.
        """
        return cast(bool, await self.call_thread(self._at_stable_end, tp))

    async def _at_stable_end(self, tp: TP) -> bool:
        consumer = self._ensure_consumer()
        if tp not in consumer.assignment():
            return False
        position = await consumer.position(tp)
        highwater, stable = consumer.highwater(tp), consumer.last_stable_offset(tp)
        if highwater is None or stable is None or stable < 0 or position < stable:
            return False
        if highwater == stable:
            return True
        key = (int(consumer._coordinator.generation), tp)
        if key not in self._undecided_since:
            self._undecided_since[key] = time.monotonic()
            self.log.info("%s[%s] is read to %s, and a transaction from there to %s is undecided: its recovery waits "
                          "for it to be committed or aborted", tp.topic, tp.partition, stable, highwater)
        since = self._undecided_since[key]
        if time.monotonic() - since < UNDECIDED_WAIT_S:
            return False
        self.log.warning("%s[%s] has had a transaction undecided from offset %s to %s for %.0f s; its recovery ends "
                         "without it", tp.topic, tp.partition, stable, highwater, time.monotonic() - since)
        return True

    async def _fetch_records(
        self,
        consumer: aiokafka.AIOKafkaConsumer,
        active_partitions: set[TP],
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> RecordMap:
        """Faust's fetch, of the partitions active when it begins, giving back what Faust would not deliver.

        Faust hands the fetch its own live set of active partitions, and aiokafka drains every partition it
        has buffered when that set is empty. Recovery empties it when it pauses the changelogs at its end,
        the inputs being paused still: a fetch waiting then took the records aiokafka had read ahead on
        the inputs, Faust dropped them, and where the seek to committed offsets had already passed that
        partition nothing brought them back. The first record after them made a gap, committed: orders
        placed while the worker was down were never handled. So the fetch asks for a copy of the set.

        Faust also stops its fetcher when a rebalance starts, but the fetch it was awaiting here is not
        cancelled: it waits out the rebalance and takes records from the new positions the recovery has
        just seeked to, for a caller who is gone. Records of a partition paused while the fetch waited are
        dropped the same way. Rewinding each such partition to its first record taken leaves it as if
        never fetched.
        """
        app = self.consumer.app
        generation = app.consumer_generation_id
        wanted = frozenset(active_partitions)  # one step under the GIL, though the event loop's thread changes it
        if not wanted:
            return {}
        records = await super()._fetch_records(consumer, cast(set[TP], wanted), timeout, max_records)
        if not records:
            return records
        owner = cast(Consumer, self.consumer)
        if app.consumer_generation_id != generation or not owner.flow_active:
            undelivered, why = set(records), "fetched across a rebalance"
        else:
            undelivered, why = {tp for tp in records if not owner.still_active(tp)}, "of partitions paused"
        if undelivered:
            assigned = consumer.assignment()
            rewound = {tp: records[tp][0].offset for tp in undelivered if records[tp] and tp in assigned}
            for tp, offset in rewound.items():
                consumer.seek(tp, offset)
            self.log.info("Gave back records %s: %s", why, sorted(rewound.items()))
            records = {tp: batch for tp, batch in records.items() if tp not in undelivered}
        _tell_recovery(app, records)
        return records


def _tell_recovery(app: Any, records: RecordMap) -> None:
    """Recovery's queue hears how many changelog records go to Faust (:class:`ChangelogQueue`)."""
    queue = getattr(getattr(app, "tables", None), "_changelog_queue", None)
    if isinstance(queue, ChangelogQueue):
        changelogs = app.tables.changelog_topics
        for tp, batch in records.items():
            if tp.topic in changelogs:
                queue.handed(tp, [record.offset for record in batch])


class RebalanceListener(faust_aiokafka.ConsumerRebalanceListener):
    """Faust's listener, noting the group generation and member id each assignment was made in.

    A transaction's offsets must name those. aiokafka resets its coordinator to generation -1 and no member
    as soon as the group has dropped the worker (a paused zombie coming back), and the group coordinator
    accepts a transaction's offsets naming no member at all: the zombie's revoke-time commit went through,
    and every output it made again for partitions another worker had taken over was committed twice.
    """

    async def on_partitions_assigned(self, assigned: Any) -> None:
        coordinator = self._thread._ensure_consumer()._coordinator
        cast(Consumer, self._thread.consumer).assigned_in = (int(coordinator.generation), str(coordinator.member_id))
        await super().on_partitions_assigned(assigned)


class Consumer(faust_aiokafka.Consumer):
    """Faust's consumer, with a new assignment paused from its first moment until recovery resumes it.

    Faust pauses the partitions of a new assignment only after a few awaits; a worker's first records
    could be handed to the agents in between, before its tables are recovered and its inputs seeked.
    Before a plain (at_least_once) offset commit it has the agents send what they hold in envelopes.
    The app's own outputs on the public topics never reach the agents (``app.own_outputs``).
    """

    RebalanceListener = RebalanceListener

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (generation, member id) of the assignment held: none before the first
        self.assigned_in: tuple[int, str] = (NO_GENERATION, "")
        self.skipped_acks = SkippedAcks(self._is_acked)
        self.scheduler = SkippingScheduler(self.scheduler, self)

    def own_outputs(self) -> Mapping[str, frozenset[str]]:
        """Full public topic name -> the event types the app writes there (set by the composition root)."""
        return cast(Mapping[str, frozenset[str]], self.app.own_outputs)  # type: ignore[attr-defined]

    def generation(self) -> int:
        """The consumer group generation now."""
        return int(self.app.consumer_generation_id)

    def group_metadata(self) -> tuple[int, str]:
        """The generation and member id of the assignment this worker holds, which its offsets are read in."""
        return self.assigned_in

    async def position(self, tp: TP) -> int | None:
        """Faust's position; -1 for a changelog partition not at its end: records fetched that recovery has not
        taken yet (``ChangelogQueue``), or under exactly_once not read to its stable end with nothing undecided
        (``ConsumerThread.at_stable_end``).

        Only Faust's recovery asks, to end a changelog partition whose position has reached the end it read.
        """
        position = await super().position(tp)
        queue = getattr(self.app.tables, "_changelog_queue", None)
        if isinstance(queue, ChangelogQueue) and queue.pending(tp):
            return -1
        if self.in_transaction and not await cast(ConsumerThread, self._thread).at_stable_end(tp):
            return -1
        return cast("int | None", position)

    def still_active(self, tp: TP) -> bool:
        """Whether Faust hands the records of ``tp`` it has fetched to the agents, asked from the consumer thread."""
        return tp in (self._active_partitions or ()) or tp in self._buffered_partitions

    def deliverable(self, tp: TP, generation: int) -> bool:
        """Faust's test in ``getmany`` of whether a record it takes next goes to the agents."""
        return self.flow_active and self.app.consumer_generation_id == generation and self.still_active(tp)

    def skip(self, tp: TP, offset: int) -> None:
        """A skipped record counts as read (so Faust sees no gap), and as acked in its turn.

        So do the offsets between it and the record read before it, which no record holds (transaction
        markers, under exactly_once after every commit): Faust fills such a gap when it reads the record
        after it, which it never reads here.
        """
        read = self._read_offset[tp]
        self._read_offset[tp] = offset
        for each in range(read + 1 if read is not None and read < offset else offset, offset + 1):
            if self.skipped_acks.skipped(tp, each):
                self._ack_skipped(tp, each)

    def _is_acked(self, tp: TP, offset: int) -> bool:
        """Whether Faust counts the record at ``offset`` as done: acked since the last commit, or committed."""
        committed = self._committed_offset[tp]
        return offset in self._acked_index[tp] or (committed is not None and offset < committed)

    def _new_offset(self, tp: TP) -> int | None:
        """The offset a commit may take for ``tp``, once the skipped offsets now due are acked."""
        for offset in self.skipped_acks.release(tp):
            self._ack_skipped(tp, offset)
        return cast("int | None", super()._new_offset(tp))

    def _ack_skipped(self, tp: TP, offset: int) -> None:
        """What Faust's ``ack`` records of a message, for an offset no message was made of."""
        with ack_lock:
            committed = self._committed_offset[tp]
            if committed is None or offset >= committed:
                acked_index = self._acked_index[tp]
                if offset not in acked_index:
                    acked_index.add(offset)
                    self._acked[tp].append(offset)
                    self._n_acked += 1

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Faust's bookkeeping of the revoked partitions goes, and so does ours; nothing is handled in place
        until the next assignment is recovered."""
        self.app.local_delivery.give_up()  # type: ignore[attr-defined]  # app.faust_app.App's
        self.skipped_acks.forget(revoked)
        await super().on_partitions_revoked(revoked)

    async def _commit_offsets(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        """What the agents hold for the inputs being committed is sent first (``app.transactions.CommitGate``)."""
        if not self.in_transaction:
            await self.app.commit_gate.flush()  # type: ignore[attr-defined]  # app.faust_app.App has one
        return await super()._commit_offsets(offsets, start_new_transaction)

    @Service.task
    async def _commit_handler(self) -> None:
        """Faust's commit timer, which under exactly_once also commits once the worker has handled all it had."""
        gate = self.app.commit_gate  # type: ignore[attr-defined]  # app.faust_app.App has one
        while not self.should_stop:
            await commit_due(gate, self.commit_interval, early=self.in_transaction)
            await self.commit()

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Pause everything assigned, then let Faust and the recovery resume what each needs."""
        self.app.local_delivery.give_up()  # type: ignore[attr-defined]  # app.faust_app.App's
        self._paused_partitions.update(assigned)
        self.skipped_acks.forget(assigned)
        await super().on_partitions_assigned(assigned, generation_id)
