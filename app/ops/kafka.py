"""Plain Kafka clients for the operator commands: topics by name, records by offset or time range."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.kafka_clients import client_options
from app.ops.args import UsageError
from app.topic_names import INTERNAL_TOPICS, changelog_names
from config.settings import Settings
from models.topics import PUBLIC_TOPICS, dead_letter_name

#: records fetched per request while reading a range
FETCH_RECORDS = 500
#: the internal topic where `streamsaga dlq redrive` writes down what it sent back
REDRIVES = "dlq-redrives"


@dataclass(frozen=True)
class Stored:
    """One record as it sits in a partition."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        """A header's value as text, or None."""
        return next((value.decode("utf-8", "replace") for key, value in self.headers if key == name), None)


def app_topics(settings: Settings) -> dict[str, str]:
    """Every topic the app uses, full name -> kind: public, internal, dlq, changelog."""
    kinds = {settings.topic(name): "public" for name in PUBLIC_TOPICS}
    kinds.update({settings.internal_topic(name): "internal" for name in INTERNAL_TOPICS})
    kinds.update({dead_letter_name(name): "dlq" for name in list(kinds)})
    kinds.update(dict.fromkeys(changelog_names(settings), "changelog"))
    kinds[settings.internal_topic(REDRIVES)] = "ops"  # what `streamsaga dlq redrive` sent back
    return kinds


def resolve_topic(settings: Settings, name: str) -> str:
    """A topic the app uses, named as in the contract (``order-events``) or by its full name."""
    topics = app_topics(settings)
    for candidate in (name, settings.topic(name), settings.internal_topic(name)):
        if candidate in topics:
            return candidate
    raise UsageError(f"unknown topic {name!r}: not one this app uses (see `streamsaga topics list`)")


@asynccontextmanager
async def consumer(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer outside any group, reading committed records only."""
    client = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False,
                              isolation_level="read_committed", max_poll_records=FETCH_RECORDS)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@asynccontextmanager
async def producer(settings: Settings, transactional_id: str | None = None) -> AsyncIterator[AIOKafkaProducer]:
    """An idempotent producer waiting for every in-sync replica; transactional when given an id."""
    client = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True,
                              transactional_id=transactional_id, max_request_size=4 * 1024 * 1024)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@asynccontextmanager
async def admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client."""
    client = AIOKafkaAdminClient(**client_options(settings))
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def partitions_of(client: AIOKafkaConsumer, topic: str) -> list[int]:
    """The partitions of a topic, from fresh metadata; a missing topic is a usage error."""
    await client._client.force_metadata_update()  # noqa: SLF001 - the topic may be newer than the client
    partitions = client.partitions_for_topic(topic)
    if not partitions:
        raise UsageError(f"topic {topic!r} does not exist on {client._client.hosts}")  # noqa: SLF001
    return sorted(partitions)


async def offsets_at(client: AIOKafkaConsumer, tps: Iterable[TopicPartition], moment: datetime) -> dict[
        TopicPartition, int]:
    """The first offset at or after ``moment`` in each partition (its end if there is none)."""
    tps = list(tps)
    found = await client.offsets_for_times({tp: int(moment.timestamp() * 1000) for tp in tps})
    ends = await client.end_offsets(tps)
    return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}


async def read_range(client: AIOKafkaConsumer, ranges: dict[TopicPartition, tuple[int, int]]) -> AsyncIterator[
        Stored]:
    """Every committed record with ``start <= offset < stop`` of each partition, partition by partition."""
    for tp, (start, stop) in sorted(ranges.items(), key=lambda item: (item[0].topic, item[0].partition)):
        if start >= stop:
            continue
        client.assign([tp])
        client.seek(tp, start)
        while True:
            batch = await client.getmany(tp, timeout_ms=2000)
            records = batch.get(tp, [])
            for record in records:
                if record.offset >= stop:
                    break
                yield Stored(tp.topic, tp.partition, record.offset, record.timestamp, record.key, record.value,
                             tuple((k, bytes(v)) for k, v in record.headers))
            if (records and records[-1].offset >= stop - 1) or await client.position(tp) >= stop:
                break
            if not records and await client.position(tp) >= (await client.end_offsets([tp]))[tp]:
                break
