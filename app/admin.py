"""Create the app's topics up front with a plain admin client, so producers never race the worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from app.kafka_clients import client_options
from app.topic_names import all_topic_names, changelog_names
from config.settings import Settings


async def until_led(admin: AIOKafkaAdminClient, options: Mapping[str, Any], names: list[str],
                    timeout: float = 30.0) -> None:
    """Wait until every partition of new topics has a leader that answers, so the first writes do not bounce.

    The metadata names a leader before that broker has taken the partition up: a write then gets
    ``NotLeaderForPartitionError`` and is retried with a warning (seen seeding 96 new partitions).
    Asking each partition's leader for its end offset waits until it can answer.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        described = await admin.describe_topics(names)
        if all(t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"]) for t in described):
            break
        await asyncio.sleep(0.2)
    partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(**options, request_timeout_ms=int(timeout * 1000))
    await consumer.start()
    try:
        await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


def topic_configs(settings: Settings, compacted: bool = False) -> dict[str, str]:
    """Configs of a topic we create: compaction for changelogs, and with replicas, how many must have a write.

    ``min.insync.replicas`` is set on the topic, not left to the cluster's default (1 unless changed),
    so an acks=all write is on two brokers before it counts and one broker may stop without losing it.
    """
    configs = {"cleanup.policy": "compact"} if compacted else {}
    if settings.replicas > 1:
        configs["min.insync.replicas"] = str(settings.min_insync_replicas)
    return configs


async def ensure_topics(settings: Settings) -> list[str]:
    """Create every missing topic with the configured partitions; return the ones created.

    Table changelogs are created here too (compacted, as Faust makes them): a worker that
    creates them itself can meet a message before its consumer has their metadata.
    """
    options = client_options(settings)
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        changelogs = set(changelog_names(settings))
        missing = [name for name in [*all_topic_names(settings), *sorted(changelogs)] if name not in existing]
        if missing:
            topics = [
                NewTopic(name, settings.partitions, settings.replicas,
                         topic_configs=topic_configs(settings, compacted=name in changelogs))
                for name in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                await admin.create_topics(topics)
            await until_led(admin, options, missing)
        return missing
    finally:
        await admin.close()
