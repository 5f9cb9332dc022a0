"""Real broker round trip through devtools.kafka_local (needs java + mvn, or cached jars)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devtools.kafka_local import BrokerConfig, LocalKafka, free_port

TOPIC = "kafka-local-smoke"


def _alive(pid: int) -> bool:
    """True if any process still has this pid (zombies included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _create_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, value, key=b"k")
    finally:
        await producer.stop()


async def _consume_one(bootstrap: str) -> bytes | None:
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id="kafka-local-test",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        await consumer.commit()
    finally:
        await consumer.stop()
    value: bytes | None = record.value
    return value


def _config(data_dir: Path) -> BrokerConfig:
    return BrokerConfig(port=free_port(), controller_port=free_port(), data_dir=data_dir, heap="256m")


@pytest.mark.integration
def test_broker_round_trip_and_clean_stop(tmp_path: Path) -> None:
    with LocalKafka(_config(tmp_path / "kafka")) as kafka:
        pid = kafka.pid
        assert pid is not None and kafka.is_running()
        assert (tmp_path / "kafka" / "broker.pid").read_text().strip() == str(pid)
        asyncio.run(_create_topic(kafka.bootstrap))
        asyncio.run(_produce(kafka.bootstrap, b"hello"))
        assert asyncio.run(_consume_one(kafka.bootstrap)) == b"hello"

    assert not kafka.is_running()
    assert not _alive(pid)
    assert not (tmp_path / "kafka" / "broker.pid").exists()


@pytest.mark.integration
def test_restart_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    with LocalKafka(_config(data_dir)) as kafka:
        asyncio.run(_create_topic(kafka.bootstrap))
        asyncio.run(_produce(kafka.bootstrap, b"persisted"))
    meta = (data_dir / "logs" / "meta.properties").read_text()

    with LocalKafka(_config(data_dir)) as kafka:
        assert asyncio.run(_consume_one(kafka.bootstrap)) == b"persisted"
    assert (data_dir / "logs" / "meta.properties").read_text() == meta
