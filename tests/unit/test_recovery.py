"""Recovery's end: the input partitions resume only once they are seeked to their committed offsets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from app.composition import build
from config.settings import Settings
from tables.recovery import FETCH_MAX_WAIT_MS, ConsumerThread, Recovery


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
