"""Table partitions holding changes no committed transaction has: after an abort, they are rebuilt.

Under exactly_once a table's change reaches RocksDB at once, and its changelog only with the worker's
transaction. Work done after the last commit of a rebalance's revoked inputs is aborted with that
transaction, but stays in the local store, ahead of the committed changelog. If the worker takes the
partition up again, its inputs are redone against a state that already has them: a saga found
COMPLETED sends nothing, and its outcome, aborted, is never seen (the zombie test in CI, 40 orders).
Kafka Streams wipes a task's state after such an abort; so do we, for the partitions written since the
last commit, before the next recovery reads their changelogs.
"""

from __future__ import annotations

from collections.abc import Iterable

from faust.types import TP, CollectionT


class Uncommitted:
    """The changelog partitions written since the last commit, and those an abort left dirty."""

    def __init__(self) -> None:
        self.written: set[TP] = set()
        self.dirty: set[TP] = set()

    def wrote(self, tp: TP) -> None:
        """A table wrote to this changelog partition; its change waits for the next commit."""
        self.written.add(tp)

    def committed(self, before: set[TP]) -> None:
        """A commit made what was written before it durable (``before``, taken before the commit began)."""
        self.written -= before

    def aborted(self) -> set[TP]:
        """The open transaction was aborted: what it wrote is dirty until rebuilt; those partitions."""
        lost, self.written = self.written, set()
        self.dirty |= lost
        return lost

    def take_dirty(self, tps: Iterable[TP]) -> set[TP]:
        """The dirty partitions among ``tps``, which the caller now rebuilds."""
        found = self.dirty & set(tps)
        self.dirty -= found
        return found


def wipe_partition(table: CollectionT, partition: int) -> int:
    """Delete every key of one partition of a RocksDB table, its persisted changelog offset too, so recovery
    reads the committed changelog from its start; how many keys there were."""
    store = table.data  # type: ignore[attr-defined]  # a faust.Table's store: faust.stores.rocksdb.Store here
    db = store._db_for_partition(partition)
    keys = list(db.keys())
    for key in keys:
        del db[key]
    store._key_index.clear()  # a cache of key -> partition
    return len(keys)
