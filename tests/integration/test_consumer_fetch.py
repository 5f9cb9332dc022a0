"""The worker's fetch, on real aiokafka and a real broker: what it read ahead on paused inputs stays unread.

aiokafka reads ahead on every assigned partition, paused in Faust or not, and a fetch asked for no
partition drains all it holds. Faust hands the fetch its live set of active partitions, which the end of
a recovery empties while a fetch waits: the changelogs are paused, the inputs are not resumed yet.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.transport.drivers import aiokafka as faust_aiokafka

from devtools.kafka_local import LocalKafka
from tables.recovery import ConsumerThread

pytestmark = pytest.mark.integration

AHEAD = 5


async def _fetch_while_the_changelog_is_paused(bootstrap: str, fetch: Any) -> tuple[dict[Any, Any], int]:
    """A fetch of the changelog alone, waiting while recovery pauses it; what it returned and the input's position."""
    run = uuid.uuid4().hex[:8]
    changelog, inputs = TopicPartition(f"fetch-{run}-changelog", 0), TopicPartition(f"fetch-{run}-orders", 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(tp.topic, num_partitions=1, replication_factor=1)
                                   for tp in (changelog, inputs)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    await producer.start()
    await consumer.start()
    try:
        for n in range(AHEAD):
            await producer.send_and_wait(inputs.topic, f"order {n}".encode())
        consumer.assign([changelog, inputs])
        await consumer.seek_to_beginning(changelog, inputs)
        for _ in range(100):  # until aiokafka has read ahead on the input
            if inputs in consumer._fetcher._records:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("aiokafka never read ahead on the input")
        active = {changelog}
        app = SimpleNamespace(consumer_generation_id=1)
        thread = ConsumerThread.__new__(ConsumerThread)  # no thread: only the fetch
        thread.consumer = SimpleNamespace(  # type: ignore[assignment]
            app=app, flow_active=True, still_active=lambda tp: tp in active)
        thread.log = logging.getLogger(__name__)  # type: ignore[assignment]  # a service sets it when it starts
        waiting = asyncio.ensure_future(fetch(thread, consumer, active, timeout=10.0))
        await asyncio.sleep(0.5)
        assert not waiting.done(), "the fetch should wait: the changelog has nothing yet"
        active.clear()  # recovery's end: "Done reading from changelog topics", the inputs not resumed yet
        await producer.send_and_wait(changelog.topic, b"a late changelog write")  # wakes the waiting fetch
        fetched = await asyncio.wait_for(waiting, 10)
        return fetched, await consumer.position(inputs)
    finally:
        await consumer.stop()
        await producer.stop()


def test_faust_s_own_fetch_drains_the_paused_input_it_read_ahead(kafka: LocalKafka) -> None:
    """The hazard itself, on the library versions we pin: if this fails, the mend below may be due to go."""
    fetched, position = asyncio.run(_fetch_while_the_changelog_is_paused(
        kafka.bootstrap, faust_aiokafka.AIOKafkaConsumerThread._fetch_records))

    assert any(tp.topic.endswith("-orders") for tp in fetched)
    assert position == AHEAD


def test_the_worker_s_fetch_leaves_a_paused_input_unread(kafka: LocalKafka) -> None:
    fetched, position = asyncio.run(_fetch_while_the_changelog_is_paused(
        kafka.bootstrap, ConsumerThread._fetch_records))

    assert fetched == {}
    assert position == 0
