"""Internal sends held back and packed per destination partition: one record per partition, not per message.

Every record costs Faust's per-message path twice, once to produce and once to consume; the saga's
commands and replies were most of a saga's records. The holder flushes before the offsets of the
inputs that caused the held sends can be committed (``agents.faust_io.consume``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from aiokafka.partitioner import murmur2

from models import envelope

Headers = Sequence[tuple[str, bytes]]
Partitioner = Callable[[bytes, int], int]
#: whether a message to ``topic[partition]`` is handled in place (``agents.local_delivery``)
Owns = Callable[[str, int], bool]
#: a message handed over in place: its internal topic, partition, key and value
InPlace = tuple[str, int, bytes, bytes]
#: an envelope's size at most, well under Kafka's default 1 MiB message and request limits
MAX_BYTES = 256 * 1024


class Outbox(Protocol):
    """Where sends go: a topic by its full name, to the partition of its key unless one is given."""

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers,
             partition: int | None = None) -> Awaitable[None]: ...


def partition_for(key: bytes, partitions: int) -> int:
    """The Java client's and aiokafka's partition of a key, which is where Faust looks for a table's key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Envelopes:
    """An outbox that holds sends to the ``internal`` topics (full name -> partitions) until :meth:`flush`.

    Sends to other topics go out at once. Held messages lose their headers: internal readers use
    key and value only. Envelopes go out one at a time, in the order they were taken from the holder,
    whoever flushes. A message to a partition that ``owns`` says is handled in place goes to
    :attr:`in_place` instead, for the executor to hand over.
    """

    def __init__(self, outbox: Outbox, internal: Mapping[str, int], partitioner: Partitioner = partition_for,
                 max_bytes: int = MAX_BYTES, owns: Owns | None = None) -> None:
        self.outbox, self.internal, self.partitioner, self.max_bytes = outbox, internal, partitioner, max_bytes
        self.owns = owns
        self.in_place: deque[InPlace] = deque()
        self._held: dict[tuple[str, int], _Held] = {}
        self._sending = asyncio.Lock()

    def __len__(self) -> int:
        """Messages held."""
        return sum(len(held.lines) for held in self._held.values())

    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers,
                   partition: int | None = None) -> None:
        """Hold a keyed message to an internal topic; send anything else now."""
        partitions = self.internal.get(topic)
        if partitions is None or key is None or value is None:
            await self.outbox.send(topic, key, value, headers, partition)
            return
        if partition is None:
            partition = self.partitioner(key, partitions)
        if self.owns is not None and self.owns(topic, partition):
            self.in_place.append((topic, partition, key, value))
            return
        await self.hold(topic, partition, key, value)

    async def hold(self, topic: str, partition: int, key: bytes, value: bytes) -> None:
        """Hold a message for the envelope of ``topic[partition]``, sending that envelope first if it is full."""
        line = envelope.line(key, value)
        held = self._held.get((topic, partition))
        if held is not None and (held.size + len(line) > self.max_bytes or len(held.lines) >= envelope.MAX_MESSAGES):
            del self._held[(topic, partition)]
            async with self._sending:
                await self._send(topic, partition, held)
            held = self._held.get((topic, partition))  # what another flush left while this one waited
        if held is None:
            held = self._held[(topic, partition)] = _Held(key)
        held.lines.append(line)
        held.size += len(line) + 1

    async def flush(self) -> None:
        """Send every partition's held messages as one record, in the order they were first held."""
        async with self._sending:
            while self._held:
                (topic, partition), held = next(iter(self._held.items()))
                del self._held[(topic, partition)]
                await self._send(topic, partition, held)

    def drop(self) -> int:
        """Forget what is held (the transaction of the inputs that made it was aborted); how many messages."""
        dropped = len(self) + len(self.in_place)
        self._held.clear()
        self.in_place.clear()
        return dropped

    async def _send(self, topic: str, partition: int, held: _Held) -> None:
        """Send one envelope; if that fails, hold its lines again, ahead of any held since."""
        try:
            await self.outbox.send(topic, held.key, envelope.pack(held.lines), (), partition)
        except BaseException:
            newer = self._held.pop((topic, partition), None)
            if newer is not None:
                held.lines += newer.lines
                held.size += newer.size
            self._held = {(topic, partition): held, **self._held}
            raise


class _Held:
    """One partition's held lines; the record is keyed by the first message's key, for readers like kcat."""

    __slots__ = ("key", "lines", "size")

    def __init__(self, key: bytes) -> None:
        self.key, self.lines, self.size = key, list[bytes](), 0
