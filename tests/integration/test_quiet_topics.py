"""The tests' "nothing more is coming" check counts an open transaction as not settled, on the real broker.

A worker killed under exactly_once leaves its transaction open until the broker times it out: its writes
have stopped, but a read_committed reader sees nothing on those partitions past its first write, the
survivor's committed events included. A test that read then would miss them.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devtools.kafka_local import LocalKafka
from support.topics import open_transactions, read_topic, wait_quiet

pytestmark = pytest.mark.integration


async def _topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()


async def _open_then_commit(bootstrap: str, topic: str) -> tuple[list[TopicPartition], int, bool, list[TopicPartition]]:
    """While one transaction is open on partition 1 behind a committed write there: what the checks say;
    then again once it has committed."""
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    txn = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"quiet-{uuid.uuid4()}",
                           enable_idempotence=True)
    await plain.start()
    await txn.start()
    try:
        await plain.send_and_wait(topic, b"committed", partition=0)
        await txn.begin_transaction()
        await txn.send_and_wait(topic, b"open", partition=1)
        await plain.send_and_wait(topic, b"after", partition=1)  # written, held back by the open transaction
        held = await asyncio.to_thread(open_transactions, bootstrap, [topic])
        visible = len(await asyncio.to_thread(read_topic, bootstrap, topic))
        try:
            await asyncio.to_thread(wait_quiet, bootstrap, [topic], 4, 1.0)
            settled_while_open = True
        except AssertionError:
            settled_while_open = False
        await txn.commit_transaction()
        return held, visible, settled_while_open, await asyncio.to_thread(open_transactions, bootstrap, [topic])
    finally:
        await txn.stop()
        await plain.stop()


def test_an_open_transaction_keeps_the_topics_from_counting_as_quiet(kafka: LocalKafka) -> None:
    topic = f"quiet-{uuid.uuid4().hex[:8]}"
    asyncio.run(_topic(kafka.bootstrap, topic))
    held, visible, settled_while_open, after_commit = asyncio.run(_open_then_commit(kafka.bootstrap, topic))
    assert held == [TopicPartition(topic, 1)]
    assert visible == 1, "read_committed sees partition 0's record and nothing behind the open transaction"
    assert not settled_while_open, "no growth for 4 s, but a transaction is open: not quiet"
    assert after_commit == []
    assert wait_quiet(kafka.bootstrap, [topic], 30, every=1.0) == 4  # three records and the commit marker
    assert sorted(r.value for r in read_topic(kafka.bootstrap, topic)) == [b"after", b"committed", b"open"]
