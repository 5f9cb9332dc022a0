"""A RocksDB store that catches up with its changelog in bulk before Faust's own recovery runs.

Faust applies a changelog one record at a time through its stream machinery: about 10,000 rows/s
on our machine, so a table of a million keys takes more than a minute and a half to rebuild.
When a partition is assigned with many records still to apply, this store reads them with a
plain consumer and writes them in RocksDB write batches, then records the offset it reached as
the partition's persisted offset, exactly where Faust's recovery expects it. Faust then reads only
what is left (nothing, or what was written in the meantime). Gaps smaller than
``bulk_restore_min_records`` are left to Faust.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import faust
import rocksdict
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faust.stores import rocksdb
from faust.types import TP, StoreT

from app.kafka_clients import client_options
from config.settings import Settings

log = logging.getLogger(__name__)

#: Records per read and per RocksDB write batch.
BATCH = 50_000
#: Stop when no record arrives for this long (e.g. the end is a transaction marker).
IDLE_S = 2.0
PROGRESS_EVERY_S = 5.0


class Table(faust.Table):
    """A Faust table whose store is :class:`Store`, whatever the store URL's scheme."""

    def _new_store_by_url(self, url: Any) -> StoreT:
        return Store(url, self.app, self, table_name=self.name, key_type=self.key_type,
                     key_serializer=self.key_serializer, value_serializer=self.value_serializer,
                     value_type=self.value_type, loop=self.loop, options=self.options)


class Store(rocksdb.Store):
    """Faust's RocksDB store, with a bulk catch-up of newly assigned changelog partitions."""

    @property
    def settings(self) -> Settings:
        """Ours, from the app that built this store (``app.faust_app.App``)."""
        settings: Settings = self.app.settings  # type: ignore[attr-defined]
        return settings

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        """Assign as Faust does, then bring far-behind partitions of this table up to date.

        Under exactly_once a revoked partition's local data is dropped first: the transaction that
        was open on it is aborted when its new owner fences it, but RocksDB keeps its writes, which
        would be taken for committed if the partition came back here.
        """
        if self.app.in_transaction:
            self._forget({tp for tp in revoked if tp.topic in self.table.changelog_topic.topics})
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        mine = {tp for tp in newly_assigned if tp.topic in self.table.changelog_topic.topics}
        if mine and self.settings.bulk_restore_min_records > 0:
            await self.bulk_restore(mine)

    async def bulk_restore(self, tps: Iterable[TP], progress: Callable[[int], Any] | None = None) -> int:
        """Apply changelog records from each partition's persisted offset to its end; how many.

        ``progress`` hears how many records each write batch applied (``streamsaga tables rebuild``).
        """
        consumer = AIOKafkaConsumer(
            **client_options(self.settings),
            group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            isolation_level="read_committed" if self.app.in_transaction else "read_uncommitted",
            max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
        )
        await consumer.start()
        try:
            return await self._restore_with(consumer, list(tps), progress)
        finally:
            await consumer.stop()

    async def _restore_with(
        self, consumer: AIOKafkaConsumer, tps: list[TP], progress: Callable[[int], Any] | None = None
    ) -> int:
        """Read every far-behind partition to the end it had when we started."""
        parts = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        starts = {tp: _next_offset(self.persisted_offset(tp)) for tp in parts}
        least = self.settings.bulk_restore_min_records
        pending = {tp: ends[tp] for tp in parts if ends[tp] - starts[tp] >= least}
        if not pending:
            return 0
        for tp in pending:
            consumer.seek(tp, starts[tp])
        total, applied = sum(end - starts[tp] for tp, end in pending.items()), 0
        log.info("restoring %s in bulk: %d records in %d partitions", self.table.name, total, len(pending))
        started = shown = idle_since = time.monotonic()
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=BATCH)
            now = time.monotonic()
            if not batch:
                if now - idle_since > IDLE_S:
                    break
                continue
            idle_since = now
            for tp, records in batch.items():
                written = self._write(tp, records)
                applied += written
                if progress is not None:
                    progress(written)
                if await consumer.position(tp) >= pending[tp]:
                    del pending[tp]
            if now - shown >= PROGRESS_EVERY_S:
                shown = now
                log.info("restoring %s: %d of %d records", self.table.name, applied, total)
        elapsed = max(time.monotonic() - started, 1e-6)
        log.info("restored %s: %d records in %.1f s (%.0f/s)", self.table.name, applied, elapsed, applied / elapsed)
        return applied

    def _forget(self, tps: set[TP]) -> None:
        """Delete every key of these partitions, their persisted offset included: they restore from scratch."""
        for tp in tps:
            db = self._dbs.get(tp.partition)
            if db is None:
                continue
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key in db.keys():  # noqa: SIM118 - a raw-mode Rdict does not iterate over its keys
                batch.delete(key)
            db.write(batch)
            log.info("dropped local %s partition %d: its open transaction was aborted", self.table.name, tp.partition)

    def _write(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> int:
        """One write batch for a partition's records, then its persisted offset."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        for record in records:
            if record.value is None:
                batch.delete(record.key)
            else:
                batch.put(record.key, record.value)
        self._db_for_partition(tp.partition).write(batch)
        self.set_persisted_offset(tp, records[-1].offset)
        return len(records)


def _next_offset(persisted: int | None) -> int:
    """Where reading resumes: after the persisted offset (0 is an offset too), or at the start."""
    return 0 if persisted is None else persisted + 1
