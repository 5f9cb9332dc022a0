"""Recovery's end: the input partitions resume only once they are seeked to their committed offsets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.utils.queues import FlowControlEvent

import tables.recovery as recovery_module
from app.composition import build
from config.settings import Settings
from tables.recovery import FETCH_MAX_WAIT_MS, ChangelogQueue, Consumer, ConsumerThread, Recovery


class RecordingConsumer:
    """The calls recovery makes on the consumer, in order; the seek yields so a racing fetch could run."""

    def __init__(self, assignment: set[TP]) -> None:
        self.calls: list[Any] = []
        self._assignment = assignment

    def assignment(self) -> set[TP]:
        return self._assignment

    async def perform_seek(self) -> None:
        self.calls.append("seek starts")
        await asyncio.sleep(0)
        self.calls.append("seek ends")

    def resume_partitions(self, tps: set[TP]) -> None:
        self.calls.append(("resume", frozenset(tps)))

    def resume_flow(self) -> None:
        self.calls.append("flow")


def _recovery(app: Any) -> Recovery:
    """The app's recovery, waiting on what it waits for without running as a service."""
    recovery = app.tables.recovery
    assert isinstance(recovery, Recovery)

    async def wait(coro: Any, timeout: float | None = None) -> None:
        await coro

    recovery._wait = wait  # type: ignore[method-assign]
    return recovery


def test_the_input_partitions_resume_after_the_seek_and_the_changelogs_stay_paused(tmp_path: Path) -> None:
    app = build(Settings(data_dir=tmp_path))
    recovery = _recovery(app)
    changelog = sorted(app.tables.changelog_topics)[0]
    inputs = {TP("orders", 0), TP("orders", 1)}
    consumer = RecordingConsumer({*inputs, TP(changelog, 0)})
    app._consumer = consumer  # type: ignore[assignment]  # only what recovery calls

    async def no_fetcher() -> None:
        return None

    app.__dict__["_fetcher"] = SimpleNamespace(maybe_start=no_fetcher)  # a cached property: the fetcher
    asyncio.run(recovery._resume_streams(generation_id=app.consumer_generation_id))

    assert consumer.calls == ["seek starts", "seek ends", ("resume", frozenset(inputs)), "flow"]
    assert recovery.completed.is_set()


def test_a_rebalance_during_the_seek_leaves_the_partitions_paused(tmp_path: Path) -> None:
    app = build(Settings(data_dir=tmp_path))
    consumer = RecordingConsumer({TP("orders", 0)})
    app._consumer = consumer  # type: ignore[assignment]
    generation = app.consumer_generation_id

    async def seek_while_the_group_rebalances() -> None:
        consumer.calls.append("seek")
        app.consumer_generation_id = generation + 1

    consumer.perform_seek = seek_while_the_group_rebalances  # type: ignore[method-assign]
    asyncio.run(_recovery(app)._resume_streams(generation_id=generation))

    assert consumer.calls == ["seek"]


class CachedOnlyConsumer:
    """An aiokafka consumer right after an assignment: no fetch response yet, so no cached stable offset."""

    def last_stable_offset(self, tp: TP) -> int | None:
        return None

    async def end_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        return {tp: 328 for tp in partitions}


def test_the_end_of_a_changelog_comes_from_the_broker_under_exactly_once_too() -> None:
    thread = ConsumerThread.__new__(ConsumerThread)  # no thread: only the question it asks
    thread._consumer = CachedOnlyConsumer()  # type: ignore[assignment]
    thread.consumer = SimpleNamespace(in_transaction=True)  # type: ignore[assignment]
    changelog = TP("app-sagas-changelog", 2)

    assert asyncio.run(thread._highwaters([changelog])) == {changelog: 328}


class RecordingAiokafka:
    """An aiokafka consumer whose buffered fetch returns while ``during_wait`` happens to the app."""

    def __init__(self, records: dict[TP, list[Any]], during_wait: Any) -> None:
        self._closed = False
        self._records = records
        self._during_wait = during_wait
        self._fetcher = self
        self._subscriptions = SimpleNamespace(fetch_context=contextlib.nullcontext)
        self.seeks: list[tuple[TP, int]] = []
        self.asked: list[Any] = []

    async def fetched_records(self, partitions: set[TP], timeout: float, max_records: int | None) -> Any:
        self.asked.append(partitions)
        self._during_wait()
        return {tp: batch for tp, batch in self._records.items() if not partitions or tp in partitions}

    def assignment(self) -> set[TP]:
        return {TP("replies", 0), TP("replies", 1)}

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


def _fetch(during_wait: Any, active: set[TP] | None = None) -> tuple[Any, RecordingAiokafka]:
    """What the consumer thread hands Faust for a fetch of two partitions (or ``active``), and the seeks it made."""
    records = {TP("replies", 0): [SimpleNamespace(offset=21), SimpleNamespace(offset=22)],
               TP("replies", 1): [SimpleNamespace(offset=7)]}
    active = set(records) if active is None else active
    app = SimpleNamespace(consumer_generation_id=2, active=active)
    consumer = RecordingAiokafka(records, lambda: during_wait(app))
    thread = ConsumerThread.__new__(ConsumerThread)  # no thread: only the fetch
    thread.consumer = SimpleNamespace(  # type: ignore[assignment]
        app=app, flow_active=True, still_active=lambda tp: tp in active)
    thread.log = logging.getLogger(__name__)  # type: ignore[assignment]  # a service sets it when it starts
    fetched = asyncio.run(thread._fetch_records(consumer, active, timeout=1.0))  # type: ignore[arg-type]
    return fetched, consumer


def test_records_fetched_for_a_caller_gone_in_a_rebalance_are_given_back() -> None:
    def rebalance(app: Any) -> None:
        app.consumer_generation_id = 3

    fetched, consumer = _fetch(rebalance)

    assert fetched == {}
    assert sorted(consumer.seeks) == [(TP("replies", 0), 21), (TP("replies", 1), 7)]


def test_records_fetched_within_one_generation_reach_faust() -> None:
    fetched, consumer = _fetch(lambda app: None)

    assert [r.offset for r in fetched[TP("replies", 0)]] == [21, 22]
    assert consumer.seeks == []


def test_a_fetch_asks_for_the_partitions_active_when_it_began_though_they_are_paused_meanwhile() -> None:
    """aiokafka drains every partition it read ahead when asked for none; recovery empties the set at its end."""
    def pause_all(app: Any) -> None:
        app.active.clear()

    fetched, consumer = _fetch(pause_all, active={TP("replies", 1)})

    assert consumer.asked == [{TP("replies", 1)}]
    assert fetched == {}
    assert consumer.seeks == [(TP("replies", 1), 7)]


def test_records_of_a_partition_paused_while_the_fetch_waited_are_given_back() -> None:
    def pause_one(app: Any) -> None:
        app.active.discard(TP("replies", 0))

    fetched, consumer = _fetch(pause_one)

    assert list(fetched) == [TP("replies", 1)]
    assert consumer.seeks == [(TP("replies", 0), 21)]


def test_a_fetch_begun_with_no_partition_active_takes_nothing() -> None:
    fetched, consumer = _fetch(lambda app: None, active=set())

    assert fetched == {}
    assert consumer.asked == []


def _internal_topic(app: Any) -> str:
    """An internal topic's full name, served in place as its agent would serve it, in a worker's app."""
    app.in_worker = True  # what ``streamsaga worker`` sets; Faust's in_transaction asks it
    topic = app.settings.topic("saga-replies")
    app.local_delivery.serve(topic, lambda record, read, now: None)
    return str(topic)


def _no_fetcher(app: Any) -> None:
    async def nothing() -> None:
        return None

    app.__dict__["_fetcher"] = SimpleNamespace(maybe_start=nothing)  # a cached property: the fetcher


def test_under_exactly_once_a_recovered_assignment_is_handled_in_place_and_not_before(tmp_path: Path) -> None:
    app = build(Settings(data_dir=tmp_path))
    topic = _internal_topic(app)
    app._consumer = RecordingConsumer({TP(topic, 0), TP(topic, 3)})  # type: ignore[assignment]
    _no_fetcher(app)
    assert not app.local_delivery.owns(topic, 0)
    asyncio.run(_recovery(app)._resume_streams(generation_id=app.consumer_generation_id))
    assert app.local_delivery.owns(topic, 0) and app.local_delivery.owns(topic, 3)
    assert not app.local_delivery.owns(topic, 1)


def test_an_assignment_whose_seek_met_a_rebalance_is_not_handled_in_place(tmp_path: Path) -> None:
    app = build(Settings(data_dir=tmp_path))
    topic = _internal_topic(app)
    consumer = RecordingConsumer({TP(topic, 0)})
    app._consumer = consumer  # type: ignore[assignment]

    async def seek_while_the_group_rebalances() -> None:
        app.consumer_generation_id += 1

    consumer.perform_seek = seek_while_the_group_rebalances  # type: ignore[method-assign]
    asyncio.run(_recovery(app)._resume_streams(generation_id=app.consumer_generation_id))
    assert not app.local_delivery.owns(topic, 0)


def test_under_at_least_once_nothing_is_handled_in_place(tmp_path: Path) -> None:
    app = build(Settings(data_dir=tmp_path, processing_guarantee="at_least_once"))
    topic = _internal_topic(app)
    app._consumer = RecordingConsumer({TP(topic, 0)})  # type: ignore[assignment]
    _no_fetcher(app)
    asyncio.run(_recovery(app)._resume_streams(generation_id=app.consumer_generation_id))
    assert not app.local_delivery.owns(topic, 0)


@pytest.mark.parametrize("callback", ["on_partitions_revoked", "on_partitions_assigned"])
def test_a_rebalance_ends_handling_in_place_before_faust_hears_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, callback: str
) -> None:
    app = build(Settings(data_dir=tmp_path))
    topic = _internal_topic(app)
    app.local_delivery.take({(topic, 0)})
    heard: list[bool] = []

    async def faust_s(self: Any, tps: set[TP], *args: Any) -> None:
        heard.append(app.local_delivery.owns(topic, 0))

    monkeypatch.setattr(faust_aiokafka.Consumer, callback, faust_s)
    asyncio.run(getattr(app.consumer, callback)({TP(topic, 0)}))
    assert heard == [False]


def _commits_after_one_message(tmp_path: Path, guarantee: str) -> float:
    """Seconds from a message's end to the worker's next commit, with a 1 s commit interval."""
    app = build(Settings(data_dir=tmp_path, processing_guarantee=guarantee, commit_interval_s=1.0))
    app.in_worker = True  # what ``streamsaga worker`` sets before the consumer is made; Faust's in_transaction asks it
    consumer = app.consumer

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        committed = loop.create_future()

        async def commit(*args: Any, **kwargs: Any) -> bool:
            if not committed.done():
                committed.set_result(loop.time())
            return True

        consumer.commit = commit  # type: ignore[method-assign]
        timer = asyncio.ensure_future(consumer._commit_handler(consumer))
        await asyncio.sleep(1.1)  # past the first interval, with nothing handled
        committed = loop.create_future()
        async with app.commit_gate.message():
            pass
        handled = loop.time()
        try:
            return await asyncio.wait_for(committed, 3.0) - handled
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    return asyncio.run(scenario())


def test_under_exactly_once_the_worker_commits_as_soon_as_it_has_handled_all_it_had(tmp_path: Path) -> None:
    assert _commits_after_one_message(tmp_path, "exactly_once") < 0.5


def test_under_at_least_once_the_worker_commits_on_the_timer(tmp_path: Path) -> None:
    assert _commits_after_one_message(tmp_path, "at_least_once") > 0.5


def test_the_broker_holds_a_workers_fetch_briefly_so_offset_lookups_on_its_connection_do_not_wait(
    tmp_path: Path,
) -> None:
    app = build(Settings(data_dir=tmp_path))
    app.in_worker = True  # what ``streamsaga worker`` sets before the consumer is made

    async def made() -> Any:
        thread = app.consumer._new_consumer_thread()  # type: ignore[attr-defined]  # tables.recovery.Consumer's
        return thread._create_worker_consumer(app.transport)

    assert asyncio.run(made())._fetch_max_wait_ms == FETCH_MAX_WAIT_MS <= 100


def _queue(monkeypatch: pytest.MonkeyPatch, faust_quiet_s: float = 10.0) -> ChangelogQueue:
    """A changelog queue whose quiet spells are short enough for a test: 10 ms when safe, else ``faust_quiet_s``."""
    monkeypatch.setattr(recovery_module, "RECOVERY_QUIET_S", 0.01)
    monkeypatch.setattr(recovery_module, "FAUST_QUIET_S", faust_quiet_s)
    return ChangelogQueue(flow_control=FlowControlEvent())


def _changelog_record(tp: TP, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(tp=tp, offset=offset))


SAGAS = TP("app-sagas-changelog", 3)


def test_recovery_hears_of_a_quiet_spell_at_once_when_no_changelog_record_is_on_its_way(
        monkeypatch: pytest.MonkeyPatch) -> None:
    queue = _queue(monkeypatch)

    async def run() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queue.get(), 5)

    asyncio.run(run())


def test_a_changelog_record_handed_to_faust_and_not_yet_taken_holds_the_quiet_spell(
        monkeypatch: pytest.MonkeyPatch) -> None:
    queue = _queue(monkeypatch)
    record = _changelog_record(SAGAS, 41)
    queue.handed(SAGAS, [41])

    async def run() -> Any:
        getting = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0.3)  # thirty short spells
        assert not getting.done()
        queue.put_nowait(record)
        got = await asyncio.wait_for(getting, 5)
        with pytest.raises(TimeoutError):  # nothing is on its way now
            await asyncio.wait_for(queue.get(), 5)
        return got

    assert asyncio.run(run()) is record


def test_a_record_handed_longer_ago_than_faust_s_spell_was_dropped_on_its_way(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = _queue(monkeypatch, faust_quiet_s=0.05)
    queue.handed(SAGAS, [41])
    assert queue.pending(SAGAS)

    time.sleep(0.1)

    assert not queue.pending(SAGAS)


def test_clearing_the_queue_when_flow_resumes_forgets_what_was_on_its_way(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = _queue(monkeypatch)
    queue.handed(SAGAS, [41, 42])
    queue.put_nowait(_changelog_record(SAGAS, 41))

    queue.clear()

    assert not queue.pending()
    assert queue.empty()


def test_the_consumer_thread_names_the_changelog_records_it_hands_to_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = _queue(monkeypatch)
    changelog, other = TP("replies", 0), TP("replies", 1)  # the first fetched partition, taken for a changelog

    def with_tables(app: Any) -> None:
        app.tables = SimpleNamespace(_changelog_queue=queue, changelog_topics={"replies"})

    _fetch(with_tables, active={changelog})

    async def take(offsets: list[int]) -> None:
        for offset in offsets:
            queue.put_nowait(_changelog_record(changelog, offset))
            await queue.get()

    assert queue.pending(changelog) and not queue.pending(other)
    asyncio.run(take([21]))
    assert queue.pending(changelog)
    asyncio.run(take([22]))
    assert not queue.pending()


def test_a_changelog_partition_with_records_not_yet_taken_is_not_at_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust's recovery takes a changelog partition whose position is at its end for done, and drops what follows."""
    queue = _queue(monkeypatch)
    consumer = Consumer.__new__(Consumer)  # no service: only the question recovery asks
    consumer.app = SimpleNamespace(tables=SimpleNamespace(_changelog_queue=queue))  # type: ignore[assignment]
    consumer.in_transaction = False

    async def position(tp: TP) -> int:
        return 120

    consumer._thread = SimpleNamespace(position=position)  # type: ignore[assignment]
    queue.handed(SAGAS, [118, 119])

    async def ask() -> tuple[int | None, int | None]:
        before = await consumer.position(SAGAS)
        for offset in (118, 119):
            queue.put_nowait(_changelog_record(SAGAS, offset))
            await queue.get()
        return before, await consumer.position(SAGAS)

    assert asyncio.run(ask()) == (-1, 120)


class FetchedState:
    """What aiokafka knows of a changelog partition from its latest fetch: position, high watermark, stable end."""

    def __init__(self, position: int, highwater: int | None, stable: int | None, assigned: bool = True) -> None:
        self.where = (position, highwater, stable)
        self.assigned = assigned
        self._coordinator = SimpleNamespace(generation=7)

    def assignment(self) -> set[TP]:
        return {SAGAS} if self.assigned else set()

    async def position(self, tp: TP) -> int:
        return self.where[0]

    def highwater(self, tp: TP) -> int | None:
        return self.where[1]

    def last_stable_offset(self, tp: TP) -> int | None:
        return self.where[2]


def _at_stable_end(state: FetchedState, undecided_since: dict[tuple[int, TP], float] | None = None) -> bool:
    thread = ConsumerThread.__new__(ConsumerThread)  # no service: only the question recovery asks
    thread._ensure_consumer = lambda: state  # type: ignore[assignment,method-assign,return-value]
    thread._undecided_since = {} if undecided_since is None else undecided_since
    thread.log = logging.getLogger("tables.recovery")  # type: ignore[assignment]
    return asyncio.run(thread._at_stable_end(SAGAS))


@pytest.mark.parametrize(("position", "highwater", "stable", "ended"), [
    (120, 120, 120, True),    # read to the end, every transaction decided
    (119, 120, 120, False),   # the commit marker not passed yet
    (120, 125, 120, False),   # a transaction from 120 not decided: an earlier owner may still commit it
    (120, None, None, False), # no fetch answered for it in this assignment yet
    (0, 0, 0, True),          # an empty changelog
])
def test_a_changelog_partition_ends_at_its_stable_end_with_no_transaction_undecided(
        position: int, highwater: int | None, stable: int | None, ended: bool) -> None:
    assert _at_stable_end(FetchedState(position, highwater, stable)) is ended


def test_a_partition_no_longer_assigned_is_not_at_its_end() -> None:
    assert _at_stable_end(FetchedState(120, 120, 120, assigned=False)) is False


def test_a_transaction_undecided_longer_than_the_broker_takes_to_abort_a_dead_ones_is_given_up_on(
        caplog: pytest.LogCaptureFixture) -> None:
    """A hanging transaction must not hold a recovery for ever; a dead worker's is aborted within the wait."""
    from app.transactions import TRANSACTION_TIMEOUT_MS

    assert recovery_module.UNDECIDED_WAIT_S > TRANSACTION_TIMEOUT_MS / 1000
    state = FetchedState(120, 125, 120)
    since = {(7, SAGAS): time.monotonic() - recovery_module.UNDECIDED_WAIT_S + 5}
    assert _at_stable_end(state, since) is False
    since[(7, SAGAS)] -= 10
    with caplog.at_level(logging.WARNING):
        assert _at_stable_end(state, since) is True
    assert "undecided from offset 120 to 125" in caplog.text


def test_an_undecided_transaction_is_timed_from_when_this_generations_recovery_first_met_it() -> None:
    since = {(6, SAGAS): time.monotonic() - 3600}  # met in an earlier assignment
    assert _at_stable_end(FetchedState(120, 125, 120), since) is False
    assert set(since) == {(6, SAGAS), (7, SAGAS)}


def test_under_exactly_once_a_changelog_partition_not_at_its_stable_end_has_no_position_yet(
        monkeypatch: pytest.MonkeyPatch) -> None:
    queue = _queue(monkeypatch)
    consumer = Consumer.__new__(Consumer)
    consumer.app = SimpleNamespace(tables=SimpleNamespace(_changelog_queue=queue))  # type: ignore[assignment]
    consumer.in_transaction = True
    ended = {"now": False}

    async def position(tp: TP) -> int:
        return 120

    async def at_stable_end(tp: TP) -> bool:
        return ended["now"]

    consumer._thread = SimpleNamespace(position=position, at_stable_end=at_stable_end)  # type: ignore[assignment]
    assert asyncio.run(consumer.position(SAGAS)) == -1
    ended["now"] = True
    assert asyncio.run(consumer.position(SAGAS)) == 120
