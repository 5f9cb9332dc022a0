"""Table partitions an aborted transaction wrote to are emptied before their next recovery (no broker)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faust.types import TP

from app.composition import build
from config.settings import Settings
from tables.recovery import Recovery
from tables.uncommitted import Uncommitted, wipe_partition


def test_what_a_commit_made_durable_is_clean_and_what_an_abort_lost_is_dirty_until_taken() -> None:
    uncommitted = Uncommitted()
    a, b, c = TP("t-changelog", 0), TP("t-changelog", 1), TP("u-changelog", 0)
    uncommitted.wrote(a)
    before = set(uncommitted.written)
    uncommitted.wrote(b)  # written while the commit ran: not made durable by it
    uncommitted.committed(before)
    assert uncommitted.written == {b}
    uncommitted.wrote(c)
    assert uncommitted.aborted() == {b, c}
    assert (uncommitted.written, uncommitted.dirty) == (set(), {b, c})
    assert uncommitted.take_dirty([a, b]) == {b}
    assert uncommitted.dirty == {c}
    assert uncommitted.aborted() == set()


def _sagas(tmp_path: Path) -> tuple[object, object]:
    app = build(Settings(data_dir=tmp_path, processing_guarantee="exactly_once"))
    table = next(t for t in app.tables.values() if t.changelog_topic.get_topic_name().endswith("sagas-changelog"))
    return app, table


def test_a_wiped_partition_loses_its_keys_and_offset_and_the_others_keep_theirs(tmp_path: Path) -> None:
    _, table = _sagas(tmp_path)
    topic = table.changelog_topic.get_topic_name()  # type: ignore[attr-defined]
    store = table.data  # type: ignore[attr-defined]
    for partition in (0, 1):
        db = store._db_for_partition(partition)
        db[b"order-%d" % partition] = b"{}"
        store.set_persisted_offset(TP(topic, partition), 41 + partition)

    assert wipe_partition(table, 0) == 2  # the key and the persisted offset
    assert list(store._db_for_partition(0).keys()) == []
    assert store.persisted_offset(TP(topic, 0)) is None
    assert store.persisted_offset(TP(topic, 1)) == 42
    assert store._db_for_partition(1)[b"order-1"] == b"{}"


def test_recovery_takes_up_a_dirty_partition_from_its_changelog_start(tmp_path: Path) -> None:
    app, table = _sagas(tmp_path)
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    assert isinstance(recovery, Recovery)
    topic = table.changelog_topic.get_topic_name()  # type: ignore[attr-defined]
    store = table.data  # type: ignore[attr-defined]
    dirty, clean = TP(topic, 0), TP(topic, 1)
    for tp in (dirty, clean):
        store._db_for_partition(tp.partition)[b"order-%d" % tp.partition] = b"{}"
        store.set_persisted_offset(tp, 41)
    app.uncommitted.dirty.add(dirty)  # type: ignore[attr-defined]

    recovery.add_active(table, dirty)  # type: ignore[arg-type]
    recovery.add_active(table, clean)  # type: ignore[arg-type]

    assert recovery.active_offsets[dirty] is None  # read from the start of the committed changelog
    assert recovery.active_offsets[clean] == 41
    assert list(store._db_for_partition(0).keys()) == []
    assert app.uncommitted.dirty == set()  # type: ignore[attr-defined]


def test_a_held_changelog_write_counts_as_written_and_an_abort_drops_it(tmp_path: Path) -> None:
    app, table = _sagas(tmp_path)
    app.in_worker = True  # type: ignore[attr-defined]  # what ``streamsaga worker`` sets; in_transaction asks it
    topic = table.changelog_topic.get_topic_name()  # type: ignore[attr-defined]

    async def write() -> None:  # a held write is a future message: it needs the loop a worker runs in
        table.send_changelog(2, b"order-9", b"{}")  # type: ignore[attr-defined]

    asyncio.run(write())
    assert app.uncommitted.written == {TP(topic, 2)}  # type: ignore[attr-defined]
    assert len(table._held_changelog()) == 1  # type: ignore[attr-defined]
    table.drop_held_changelog()  # type: ignore[attr-defined]
    assert table._held_changelog() == {}  # type: ignore[attr-defined]
