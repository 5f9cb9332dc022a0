"""Reading a time-keyed index up to now: per owned partition, in key order, stopping at the first later key.

A finished saga waits days to be forgotten, so its index holds every saga of that time. Keys begin
with the time (``<time>|<order id>``, fixed width), and RocksDB keeps each partition's keys sorted:
the scan reads what is due and one key more per partition, however large the index grows.
"""

from __future__ import annotations

from faust.types import CollectionT


def due_keys(table: CollectionT, upto: str) -> list[bytes]:
    """Keys whose time part is at or before ``upto``, in the partitions this worker serves as active."""
    limit = upto.encode()
    store = table.data  # type: ignore[attr-defined]  # a faust.Table's store: faust.stores.rocksdb.Store here
    found: list[bytes] = []
    for db in store._dbs_for_actives():
        for key in db.keys():  # noqa: SIM118 - an Rdict has no key iterator of its own
            if key.split(b"|", 1)[0] > limit:
                break
            found.append(key)
    return found
