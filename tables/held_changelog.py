"""Tables whose changelog gets a key's last value per commit under exactly_once, not every value between.

A saga's state, its deadline and the minute's counts are written several times between two commits
when orders come quickly; each write was a changelog record to produce (and, for a standby, to
read). What a transaction makes durable is only the last value of each key, so the table holds its
changelog writes and the commit gate (``app.transactions.CommitGate``) sends them before each commit,
into the transaction of the changelog partition's input, as before. A worker that dies first loses
them with the transaction, and its local tables are rebuilt (``app.local_state``).

Not under at_least_once: there a worker keeps its local tables after a crash, and a change they hold
whose changelog write was still held would never reach the changelog (the redelivery finds the
change made and writes nothing), so a later owner of the partition would not have it.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from faust.types import TP, FutureMessage
from faust.types.codecs import CodecArg

from tables import bulk_restore


class HeldSender(Protocol):
    """The worker's producer (``app.transactions.Producer``) as this table sends through it."""

    async def send_held(self, topic: str, partition: int, messages: list[FutureMessage]) -> None: ...


class Table(bulk_restore.Table):
    """A table of :mod:`tables.bulk_restore` that holds its changelog writes until :meth:`flush_changelog`."""

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: CodecArg | None = None,
        value_serializer: CodecArg | None = None,
    ) -> FutureMessage:
        """Under exactly_once hold the write, a later one of the same key replacing it; otherwise send it now.

        Either way the message's partition is fixed now, as Faust's callers read it from the result.
        """
        if not self.app.in_transaction:
            return super().send_changelog(partition, key, value, key_serializer, value_serializer)
        fut = self.changelog_topic.as_future_message(
            key=key, value=value, partition=partition, key_serializer=key_serializer or self.key_serializer,
            value_serializer=value_serializer or self.value_serializer, callback=self._on_changelog_sent,
            eager_partitioning=True,
        )
        self._held_changelog()[(fut.message.partition, key)] = fut
        written = TP(self.changelog_topic.get_topic_name(), cast(int, fut.message.partition))  # fixed just above
        self.app.uncommitted.wrote(written)  # type: ignore[attr-defined]  # app.faust_app.App's
        return fut

    def drop_held_changelog(self) -> None:
        """Forget the held writes: their transaction was aborted (``tables.uncommitted``)."""
        self._held_changelog().clear()

    async def flush_changelog(self) -> None:
        """Send the held writes to the changelog, each key's last, in one batch per partition.

        Not one by one through Faust's producer buffer and publish path: at about 170 us a record, on the
        critical path of every commit (while no message is handled), that took 9 ms per commit at 60 orders/s.
        """
        held = self._held_changelog()
        if not held:
            return
        by_partition: dict[int, list[FutureMessage]] = {}
        for (partition, _), fut in held.items():
            by_partition.setdefault(cast(int, partition), []).append(fut)  # fixed in send_changelog
        held.clear()
        producer = cast(HeldSender, self.app.producer)
        topic = self.changelog_topic.get_topic_name()
        for partition, messages in by_partition.items():
            await producer.send_held(topic, partition, messages)

    def _held_changelog(self) -> dict[tuple[int | None, Any], FutureMessage]:
        held: dict[tuple[int | None, Any], FutureMessage] | None = self.__dict__.get("_held")
        if held is None:
            held = self.__dict__["_held"] = {}
        return held
