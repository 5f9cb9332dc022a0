"""What handling one message does, as data: the table writes, then the messages to send.

Handlers return :class:`Effects`; one executor (``agents/executor.py``) applies them, in the worker
and in the simulation alike, so the order of writes and sends lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.commands import Command, Message
from models.events import Event
from models.measures import Measure
from models.topics import topic_of


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
        """The contract's headers for an event; internal commands carry none."""
        return self.message.headers() if isinstance(self.message, Event) else {}


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
