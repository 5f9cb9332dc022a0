"""What handling one message does, as data: the table writes, then the messages to send.

Handlers return :class:`Effects`; one executor (``agents/executor.py``) applies them, in the worker
and in the simulation alike, so the order of writes and sends lives in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from models.commands import Command, Message
from models.envelope import ENVELOPE_BITS, MAX_MESSAGES, is_envelope, unpack
from models.events import Event
from models.measures import Measure
from models.topics import topic_of

#: the offset of a message one agent hands to another within the worker (``agents.local_delivery``): no record
#: holds it, so it lies below every position read from a partition
INLINE_OFFSET = -1
#: the header on every event the app writes, beside the contract's: ingress skips its own outputs by it
OUTPUT_MARK = ("emittedBy", b"streamsaga")


@dataclass(frozen=True, slots=True)
class Incoming:
    """One consumed record: where it came from (for dead letters), its key, its value and its timestamp."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: the record's timestamp, seconds since the epoch: the event time of a dead letter
    timestamp: float
    #: its place in the record's envelope (``models.envelope``); None for a record that is one message
    index: int | None = None

    @property
    def position(self) -> int:
        """Where the message is in its partition, in reading order: the offset, then the place in the envelope.

        What state records as its last input and redeliveries are compared with (``handlers.resends``).
        """
        return self.offset << ENVELOPE_BITS | (self.index or 0)


def opened(record: Incoming) -> list[Incoming]:
    """The messages of an internal record: an envelope's, numbered in order, or the record as one message.

    An envelope too long to number is left whole, and is dead-lettered as unreadable.
    """
    if not is_envelope(record.value):
        return [record]
    assert record.value is not None
    messages = unpack(record.value)
    if len(messages) > MAX_MESSAGES:
        return [record]
    return [dataclasses.replace(record, key=key, value=value, index=index)
            for index, (key, value) in enumerate(messages)]


#: how a handler reads a table: (table, key) -> the stored value, or None
Reader = Callable[[str, str], bytes | None]


@dataclass(frozen=True, slots=True)
class Write:
    """Store ``value`` under ``key`` in a table; ``None`` deletes the key."""

    table: str
    key: str
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to a topic (its logical name), keyed by ``key``."""

    topic: str
    key: str
    message: Message

    @property
    def headers(self) -> dict[str, bytes]:
        """The contract's headers for an event, and the mark of the app's own output; commands carry none."""
        return {**self.message.headers(), OUTPUT_MARK[0]: OUTPUT_MARK[1]} if isinstance(self.message, Event) else {}


@dataclass(frozen=True, slots=True)
class Effects:
    """Everything one message changes and sends, applied writes first, then sends; and what it
    newly counts, for the worker's metrics (the writes already count it in the tables)."""

    writes: tuple[Write, ...] = ()
    sends: tuple[Send, ...] = ()
    measures: tuple[Measure, ...] = ()

    def __len__(self) -> int:
        return len(self.writes) + len(self.sends)


NOTHING = Effects()


def output(message: Message) -> Send:
    """Where an output goes: an event to its public topic, a command to its owner's topic."""
    if isinstance(message, Command):
        return Send(message.destination, message.key, message)
    return Send(topic_of(message.event_type), message.aggregate_id, message)


def outputs(messages: list[Message]) -> tuple[Send, ...]:
    """Each output routed."""
    return tuple(output(message) for message in messages)
