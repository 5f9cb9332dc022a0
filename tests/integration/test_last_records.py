"""``tables.last_records`` on the real broker: the last committed record of a log that ends in markers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devtools.kafka_local import LocalKafka
from tables.last_records import FIRST_WINDOW, last_committed_records

pytestmark = pytest.mark.integration


async def _write(bootstrap: str, topic: str, partition: int, committed: int, aborted: int, per_txn: int = 1) -> None:
    """``committed`` records in transactions of ``per_txn``, then ``aborted`` records in one aborted transaction."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"t-{uuid.uuid4()}")
    await producer.start()
    try:
        for start in range(0, committed, per_txn):
            async with producer.transaction():
                for n in range(start, min(committed, start + per_txn)):
                    await producer.send(topic, f"ok-{n}".encode(), partition=partition)
        if aborted:
            await producer.begin_transaction()
            for n in range(aborted):
                await producer.send(topic, f"aborted-{n}".encode(), partition=partition)
            await producer.flush()
            await producer.abort_transaction()
    finally:
        await producer.stop()


async def _scenario(bootstrap: str) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    topic = f"last-records-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=5, replication_factor=1)])
    finally:
        await admin.close()
    await _write(bootstrap, topic, 0, committed=3, aborted=2)  # data 0, 2, 4 with markers, aborted 6-7, marker 8
    await _write(bootstrap, topic, 1, committed=0, aborted=4)  # nothing committed at all
    await _write(bootstrap, topic, 2, committed=20, aborted=5 * FIRST_WINDOW, per_txn=4)  # far behind the end
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap)  # at_least_once: no markers
    await plain.start()
    try:
        for n in range(5):
            await plain.send_and_wait(topic, f"plain-{n}".encode(), partition=3)
    finally:
        await plain.stop()
    partitions = [TopicPartition(topic, p) for p in range(5)]  # partition 4 stays empty
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return ends, await last_committed_records({"bootstrap_servers": bootstrap}, ends)


def test_the_last_committed_record_is_found_behind_markers_and_aborted_records(kafka: LocalKafka) -> None:
    ends, found = asyncio.run(_scenario(kafka.bootstrap))
    by_partition = {tp.partition: offset for tp, offset in found.items()}
    # 20 records in 5 transactions: each is followed by its commit marker, so the last record is at 23
    assert by_partition == {0: 4, 1: -1, 2: 23, 3: 4, 4: -1}
    assert {tp.partition: end for tp, end in ends.items()} == {0: 9, 1: 5, 2: 66, 3: 5, 4: 0}
