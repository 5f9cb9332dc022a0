"""Exactly-once for a topology that feeds itself: join the transaction of the message being processed.

faust-streaming 0.15.3 picks the transactional producer of a send from the *destination*
partition, but commits the transaction of the *source* partition. When an agent's output goes
to another topic or partition (the saga's commands, every changelog write) it lands in a
transaction nobody commits, and ``read_committed`` readers never see it: sagas stall. Kafka
Streams' rule is one producer per input task; this manager follows it. Changelog writes are
flushed from Faust's producer buffer, outside the event's context; they go to the partition of
the event that caused them, so the destination names the right transaction, as Faust does.
Any other send with no message being processed (web views, timers) has no transaction to
join and goes out plainly: in a transaction nobody commits it would never be seen.
"""

from __future__ import annotations

from collections.abc import Awaitable

from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, RecordMetadata
from faust.types.tuples import HeadersArg


class SourceTransactionManager(TransactionManager):
    """Send within the transaction of the source partition, the one the commit will close."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: HeadersArg | None,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[RecordMetadata]:
        """Route the send to the producer of the event being processed, if any."""
        from faust import current_event

        event = current_event()
        source: TP | None = event.message.tp if event is not None else None
        if partition is None:
            partition = self.consumer.key_partition(topic, key, partition)
        if source is None and topic in self._changelog_topics() and partition is not None:
            source = TP(topic, partition)
        transactional_id = None
        if source is not None:
            group = self.app.assignor.group_for_topic(source.topic)
            transactional_id = f"{self.app.conf.id}-{group}-{source.partition}"
        return await self.producer.send(
            topic, key, value, partition, timestamp, headers, transactional_id=transactional_id
        )

    def _changelog_topics(self) -> set[str]:
        """Names of the tables' changelog topics."""
        return {table.changelog_topic.get_topic_name() for table in self.app.tables.values()}


class Transport(faust_aiokafka.Transport):
    """Faust's Kafka transport with our transaction manager (which only matters under exactly_once)."""

    TransactionManager = SourceTransactionManager
