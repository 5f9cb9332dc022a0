"""The executor's tables and topics in a worker: Faust's, and the loop that feeds it a stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from faust.types import StreamT, TopicT

from agents.executor import Executor, Headers
from app.transactions import CommitGate
from models.effects import Incoming
from models.handlers import Handler


class TopicOutbox:
    """Sends to Faust topics by full name (public, internal and dead-letter topics); ``track`` hears of each."""

    def __init__(self, topics: dict[str, TopicT],
                 track: Callable[[str, asyncio.Future[Any]], None] | None = None) -> None:
        self.topics, self.track = topics, track

    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        """Hand the message to Faust's producer; Faust flushes it before committing the input."""
        sent = await self.topics[topic].send(key=key, value=value, headers=list(headers))
        if self.track is not None:
            self.track(topic, cast(asyncio.Future[Any], sent))


async def consume(stream: StreamT, executor: Executor, handler: Handler) -> None:
    """Every record of the stream, one at a time, through the handler and the executor.

    No commit falls inside a record's handling (``app.transactions.CommitGate``).
    """
    gate: CommitGate = stream.app.commit_gate  # type: ignore[attr-defined]  # app.faust_app.App has one
    async for event in stream.events():
        message = event.message
        record = Incoming(message.topic, message.partition, message.offset, message.key, message.value,
                          message.timestamp)
        async with gate.message():
            await executor.process(handler, record)
