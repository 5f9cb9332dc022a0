"""Fast plain-client helpers for the benchmark: bulk writes, counting outcomes, reading timestamps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.admin import until_led

TERMINAL = (b'"event_type":"OrderConfirmed"', b'"event_type":"OrderCancelled"')


async def bulk_write(bootstrap: str, topic: str, items: Iterable[tuple[bytes, bytes]],
                     progress: Callable[[int], None] | None = None) -> int:
    """Write key/value pairs as fast as the client goes; returns how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20,
                                max_batch_size=256 * 1024, compression_type=None)
    await producer.start()
    count = 0
    try:
        for key, value in items:
            await producer.send(topic, value=value, key=key)
            count += 1
            if progress is not None and count % 10_000 == 0:
                progress(count)
        await producer.flush()
    finally:
        await producer.stop()
    return count


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Sum of end offsets per topic: how many records each holds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        totals: dict[str, int] = {}
        for topic in topics:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - a topic created after start
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            ends = await consumer.end_offsets(tps) if tps else {}
            totals[topic] = sum(ends.values())
        return totals
    finally:
        await consumer.stop()


def _outcomes(batch: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> Iterator[tuple[str, float]]:
    """(order id, record time in s) of each order outcome in a fetched batch."""
    for messages in batch.values():
        for message in messages:
            if message.value and any(marker in message.value for marker in TERMINAL):
                yield orjson.loads(message.value)["order_id"], message.timestamp / 1000


async def terminal_times(bootstrap: str, topic: str, wanted: set[str], timeout: float,
                         progress: Callable[[int], None] | None = None) -> dict[str, float]:
    """Follow ``topic`` from the start until every wanted order has its outcome; order id -> record time (s)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < len(wanted) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for order_id, timestamp in _outcomes(batch):
                if order_id in wanted and order_id not in seen:
                    seen[order_id] = timestamp
            if progress is not None:
                progress(len(seen))
        return seen
    finally:
        await consumer.stop()


class OutcomeWatch:
    """Follows a topic from its end as a ``read_committed`` reader: when each order's outcome became readable.

    A record's timestamp is when the worker wrote it; under exactly_once a reader sees it only once its
    transaction commits, which is what a user of the outcome waits for.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="latest",
                                          enable_auto_commit=False, group_id=None,
                                          isolation_level="read_committed", fetch_max_wait_ms=100)
        self._topic = topic
        #: order id -> (wall time it was read, the record's timestamp), in seconds
        self.seen: dict[str, tuple[float, float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start at the topic's end now, so every outcome written from here on is seen."""
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._topic) or set()
        for partition in partitions:  # resolve "latest" before anything is sent
            await self._consumer.position(TopicPartition(self._topic, partition))
        self._task = asyncio.ensure_future(self._follow())

    async def _follow(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=20_000)
            now = time.time()
            for order_id, timestamp in _outcomes(batch):
                self.seen.setdefault(order_id, (now, timestamp))

    async def wait_for(self, wanted: set[str], timeout: float) -> None:
        """Until every wanted order's outcome was read, or ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not wanted <= self.seen.keys() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


async def arrival_span(bootstrap: str, topic: str, count: int, timeout: float,
                       progress: Callable[[int], None] | None = None) -> float:
    """Follow ``topic`` until ``count`` records are there; seconds from the first record's time to the last's."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    seen, first, last = 0, float("inf"), 0.0
    deadline = time.monotonic() + timeout
    try:
        while seen < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for messages in batch.values():
                seen += len(messages)
                first = min([first] + [m.timestamp / 1000 for m in messages])
                last = max([last] + [m.timestamp / 1000 for m in messages])
            if progress is not None:
                progress(seen)
        if seen < count:
            raise TimeoutError(f"only {seen} of {count} records reached {topic} within {timeout}s")
        return last - first
    finally:
        await consumer.stop()


def run(coroutine: object) -> object:
    """asyncio.run with a name that reads well at the call site."""
    return asyncio.run(coroutine)  # type: ignore[arg-type]


async def create_topics(bootstrap: str, names: list[str], partitions: int = 8) -> None:
    """Create topics for the benchmark's own use (the local broker does not auto-create)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
        await until_led(admin, {"bootstrap_servers": bootstrap}, names)
    finally:
        await admin.close()
