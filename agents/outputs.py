"""Send what the domain returned: commands to internal topics, events to public ones."""

from __future__ import annotations

from collections.abc import Iterable

from app.topics import internal, topic_for_event
from models.commands import Command, Message
from models.events import Event


async def send_all(outputs: Iterable[Message]) -> None:
    """Send each output, keyed by the id of what it is about."""
    for out in outputs:
        if isinstance(out, Event):
            await topic_for_event(out).send(
                key=out.aggregate_id.encode(), value=out.encode(), headers=out.headers()
            )
        elif isinstance(out, Command):
            await internal[out.destination].send(key=out.key.encode(), value=out.encode())
