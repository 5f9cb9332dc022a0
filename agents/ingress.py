"""Read the public topics: validate, dead-letter what is bad, forward the rest to its owner.

Forwarding through an internal topic keyed by our own partitioner puts every key on the
partition that owns its state, whatever partitioner the outside producer used.
"""

from __future__ import annotations

from faust.types import EventT, StreamT

from agents.dead_letters import dead_letter
from app.faust_app import app, settings
from app.topics import internal, public
from models.commands import Command
from models.events import BadMessage, decode_event
from models.handlers import route_public
from models.topics import INPUT_TOPICS


async def ingest(topic: str, event: EventT) -> None:
    """Validate one public message and forward it, or dead-letter it."""
    try:
        forward = route_public(topic, decode_event(event.message.value), settings.payment_mode)
    except BadMessage as exc:
        await dead_letter(event, exc.reason, type(exc).__name__)
        return
    if forward is not None:
        destination, message = forward
        key = message.key if isinstance(message, Command) else message.aggregate_id
        headers = None if isinstance(message, Command) else message.headers()
        await internal[destination].send(key=key.encode(), value=message.encode(), headers=headers)


def _ingress_agent(topic: str) -> None:
    """Register one ingress agent for a public topic."""

    async def ingress(stream: StreamT) -> None:
        async for event in stream.events():
            await ingest(topic, event)

    ingress.__name__ = ingress.__qualname__ = f"{topic.replace('-', '_')}_ingress"
    app.agent(public[topic], name=f"ingress.{topic}")(ingress)


for _topic in INPUT_TOPICS:
    _ingress_agent(_topic)
