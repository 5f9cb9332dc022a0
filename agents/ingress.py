"""Read the public topics: validate, dead-letter what is bad, forward the rest to its owner.

Forwarding through an internal topic keyed by our own partitioner puts every key on the
partition that owns its state, whatever partitioner the outside producer used.
"""

from __future__ import annotations

from datetime import timedelta

from faust.types import AppT, StreamT

from agents.executor import Executor
from agents.faust_io import consume
from app.topics import Topics
from models import handlers
from models.topics import INPUT_TOPICS


def register(app: AppT, topics: Topics, executor: Executor, payment_mode: str, retention: timedelta) -> None:
    """One ingress agent for each public input topic; ``retention``: how long finished sagas are kept."""
    for topic in INPUT_TOPICS:
        handler = handlers.ingress(topic, payment_mode, retention)

        async def ingress(stream: StreamT, handler: handlers.Handler = handler) -> None:
            await consume(stream, executor, handler)

        ingress.__name__ = ingress.__qualname__ = f"{topic.replace('-', '_')}_ingress"
        app.agent(topics.public[topic], name=f"ingress.{topic}")(ingress)
