"""The two requests of one transactional producer per worker (KIP-447), against the real broker.

A transaction's offsets name the group generation and member: a stale one is refused, the transaction is
aborted and nothing it sent is seen. A committed offset is read only once stable: while a transaction
holding it is open, the stable fetch is told to retry, where aiokafka's plain fetch answers the old offset.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer.group_coordinator import GroupCoordinator

from app.group_transactions import (
    NO_GENERATION,
    GroupFenced,
    UnstableOffsetCommit,
    commit_offsets_with_generation,
    fetch_stable_offsets,
)
from devtools.kafka_local import LocalKafka

pytestmark = pytest.mark.integration


async def _topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1) for name in names])
    finally:
        await admin.close()


@asynccontextmanager
async def _member(bootstrap: str, topic: str, group: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A group member that owns the topic's one partition."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        for _ in range(100):
            await consumer.getmany(timeout_ms=100)
            if consumer.assignment():
                break
        assert consumer.assignment(), "the member got no partition"
        yield consumer
    finally:
        await consumer.stop()


@asynccontextmanager
async def _transactional(bootstrap: str, metadata: tuple[int, str]) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"t-{uuid.uuid4()}",
                                enable_idempotence=True)
    commit_offsets_with_generation(producer._sender, lambda: metadata)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def _read_committed(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while await consumer.position(tp) < end:
            for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                values.extend(record.value for record in batch if record.value is not None)
        return values
    finally:
        await consumer.stop()


def _coordinator(consumer: AIOKafkaConsumer) -> GroupCoordinator:
    coordinator = consumer._coordinator
    assert isinstance(coordinator, GroupCoordinator)
    return coordinator


@asynccontextmanager
async def _owned_input(bootstrap: str) -> AsyncIterator[tuple[AIOKafkaConsumer, GroupCoordinator, TopicPartition,
                                                              str, str]]:
    """Fresh input and output topics, and a group member owning the input's partition: member, its
    coordinator, the input partition, the output topic and the group."""
    source, sink, group = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("in", "out", "g"))
    await _topics(bootstrap, source, sink)
    async with _member(bootstrap, source, group) as member:
        yield member, _coordinator(member), TopicPartition(source, 0), sink, group


async def _fenced_and_current(bootstrap: str) -> None:
    async with _owned_input(bootstrap) as (member, coordinator, tp, sink, group):
        fetch_stable_offsets(coordinator)  # a committed offset read at once, not its value before the commit
        current = (coordinator.generation, coordinator.member_id)
        # the last: what aiokafka's coordinator says once the group dropped the member; the broker would
        # accept it from anyone, so it is refused before it is sent
        for stale in ((current[0] - 1, current[1]), (current[0], "someone-else"), (NO_GENERATION, "")):
            async with _transactional(bootstrap, stale) as zombie:
                await zombie.begin_transaction()
                await zombie.send_and_wait(sink, b"from a zombie")
                with pytest.raises(GroupFenced):
                    await zombie.send_offsets_to_transaction({tp: 7}, group)
                await zombie.abort_transaction()  # abortable, not fatal as aiokafka would have it
                await zombie.begin_transaction()  # and the producer goes on
                await zombie.abort_transaction()
        assert await member.committed(tp) is None, "a fenced transaction committed its offset"

        async with _transactional(bootstrap, current) as owner:
            await owner.begin_transaction()
            await owner.send_and_wait(sink, b"from the owner")
            await owner.send_offsets_to_transaction({tp: 5}, group)
            await owner.commit_transaction()
        assert await member.committed(tp) == 5
    assert await _read_committed(bootstrap, sink) == [b"from the owner"]


async def _stable_fetch(bootstrap: str) -> None:
    async with _owned_input(bootstrap) as (_, coordinator, tp, sink, group):
        async with _transactional(bootstrap, (coordinator.generation, coordinator.member_id)) as owner:
            await owner.begin_transaction()
            await owner.send_and_wait(sink, b"pending")
            await owner.send_offsets_to_transaction({tp: 3}, group)
            # the offset sits in an open transaction: aiokafka's fetch answers without it, ours waits
            assert await coordinator._do_fetch_commit_offsets([tp]) == {}
            fetch_stable_offsets(coordinator)
            with pytest.raises(UnstableOffsetCommit) as unstable:
                await coordinator._do_fetch_commit_offsets([tp])
            assert unstable.value.retriable
            waiting = asyncio.ensure_future(coordinator.fetch_committed_offsets([tp]))  # retries until stable
            await asyncio.sleep(0.5)
            assert not waiting.done()
            await owner.commit_transaction()
            committed = await asyncio.wait_for(waiting, 30)
        assert committed[tp].offset == 3


def test_a_transaction_naming_a_stale_generation_or_member_is_refused_and_aborted(kafka: LocalKafka) -> None:
    asyncio.run(_fenced_and_current(kafka.bootstrap))


def test_a_committed_offset_is_read_only_once_its_transaction_completed(kafka: LocalKafka) -> None:
    asyncio.run(_stable_fetch(kafka.bootstrap))
