"""Plain-client topic I/O for tests: write events, read whole topics back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.admin import ensure_topics
from app.topic_names import input_topic_names
from config.settings import Settings
from devtools.demo import produce
from models.events import Event


@dataclass(frozen=True)
class Record:
    """One message read back from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def body(self) -> dict[str, Any]:
        """The JSON value."""
        return orjson.loads(self.value) if self.value is not None else {}


def setup_topics(settings: Settings) -> None:
    """Create the app's topics before anything writes to them."""
    asyncio.run(ensure_topics(settings))


def write_events(settings: Settings, events: Iterable[Event]) -> int:
    """Write events to their public topics as an outside producer would."""
    return asyncio.run(produce(settings, events))


def write_raw(
    bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes | None]], partition: int | None = None
) -> None:
    """Write raw key/value pairs, for malformed input or a partition of our choosing."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 1024 * 1024)
        await producer.start()
        try:
            for key, value in items:
                await producer.send(topic, value=value, key=key, partition=partition)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def read_topic(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[Record]:
    """Every message now in the topic, all partitions, from the beginning: as a consumer of the app's output
    reads it (committed transactions only; the same as read_uncommitted for writes outside transactions)."""

    async def run() -> list[Record]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    max_partition_fetch_bytes=4 * 1024 * 1024, isolation_level=isolation)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
            if not partitions:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - first read of a new topic
                partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            records: list[Record] = []
            remaining = {tp for tp in partitions if ends[tp] > 0}
            while remaining:
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, messages in batch.items():
                    for m in messages:
                        if m.offset < ends[tp]:
                            records.append(Record(topic, m.partition, m.offset, m.key, m.value, dict(m.headers)))
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
            return records
        finally:
            await consumer.stop()

    return asyncio.run(run())


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def end_offsets_total(bootstrap: str, topics: Iterable[str]) -> int:
    """How many messages the topics have ever had, all partitions together."""
    return sum(_end_offsets(bootstrap, topics, "read_uncommitted").values())


def open_transactions(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    """Partitions where a transaction is still open: a read_committed reader sees nothing past its first write
    there until it commits or aborts (a killed worker's, when its timeout runs out)."""
    names = list(topics)
    written = _end_offsets(bootstrap, names, "read_uncommitted")
    stable = _end_offsets(bootstrap, names, "read_committed")
    return sorted((tp for tp, end in written.items() if stable.get(tp, end) < end), key=str)


def _end_offsets(bootstrap: str, topics: Iterable[str], isolation: str) -> dict[TopicPartition, int]:
    """Each partition's end as a reader at ``isolation`` sees it (read_committed: the last stable offset)."""

    async def run() -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation)
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - topics created by someone else
            partitions = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or set())]
            return dict(await consumer.end_offsets(partitions)) if partitions else {}
        finally:
            await consumer.stop()

    return asyncio.run(run())


def wait_quiet(bootstrap: str, topics: Iterable[str], timeout: float, every: float = 3.0) -> int:
    """Until nothing more is written to the topics for ``every`` seconds and no transaction is open on them,
    so a read_committed reader sees all of it (a killed worker's transaction holds readers back until it
    times out, after its writes stopped); their message count then."""
    names = list(topics)
    last: list[int] = []

    def quiet() -> bool:
        last.append(end_offsets_total(bootstrap, names))
        return len(last) > 1 and last[-2] == last[-1] and not open_transactions(bootstrap, names)

    wait_until(quiet, timeout, f"{names} to stop growing, with no transaction open", every=every)
    return last[-1]


def group_offsets(bootstrap: str, settings: Settings) -> dict[TopicPartition, tuple[int, int | None]]:
    """Each input partition's end offset and the app group's committed offset there (None if none)."""
    tps = [TopicPartition(topic, p) for topic in input_topic_names(settings) for p in range(settings.partitions)]

    async def run() -> dict[TopicPartition, tuple[int, int | None]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await consumer.start()
        await admin.start()
        try:
            ends = await consumer.end_offsets(tps)
            done = await admin.list_consumer_group_offsets(settings.group_id, partitions=tps)
            return {tp: (ends[tp], done[tp].offset if tp in done else None) for tp in tps}
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(run())
