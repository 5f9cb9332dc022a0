"""The executor's tables and topics in a worker: Faust's, and the loop that feeds it a stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from faust.types import TP, StreamT, TopicT

from agents.executor import Executor, Headers
from app.transactions import CommitGate, sending_for
from models.effects import Incoming, opened
from models.handlers import Handler

#: records handled before held sends go out even while more wait: what bounds a hop's delay under load
FLUSH_EVERY = 200


class TopicOutbox:
    """Sends to Faust topics by full name (public, internal and dead-letter topics); ``track`` hears of each."""

    def __init__(self, topics: dict[str, TopicT],
                 track: Callable[[str, asyncio.Future[Any]], None] | None = None) -> None:
        self.topics, self.track = topics, track

    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers,
                   partition: int | None = None) -> None:
        """Hand the message to Faust's producer; Faust flushes it before committing the input."""
        sent = await self.topics[topic].send(key=key, value=value, headers=list(headers), partition=partition)
        if self.track is not None:
            self.track(topic, cast(asyncio.Future[Any], sent))


async def consume(stream: StreamT, executor: Executor, handler: Handler, enveloped: bool = False) -> None:
    """Every record of the stream through the handler and the executor; with ``enveloped``, each message of
    an envelope (``models.envelope``) in turn.

    What the handler sends to internal topics is held, and sent in one envelope per destination partition
    once no record waits, every ``FLUSH_EVERY`` records, before a record of another input partition (its
    sends join another transaction) and before a commit (``app.transactions.CommitGate``). No commit falls
    inside a record's handling.
    """
    gate: CommitGate = stream.app.commit_gate  # type: ignore[attr-defined]  # app.faust_app.App has one
    waiting = stream.channel.queue  # type: ignore[attr-defined]  # an agent's stream reads a channel
    mine = executor.for_loop()
    source: TP | None = None
    handled = 0

    async def flush() -> None:
        nonlocal handled
        handled = 0
        with sending_for(source):
            await mine.flush()

    with gate.flushing(flush):
        async for event in stream.events():
            message = event.message
            async with gate.message():
                if message.tp != source:
                    await flush()
                    source = message.tp
                record = Incoming(message.topic, message.partition, message.offset, message.key, message.value,
                                  message.timestamp)
                for each in opened(record) if enveloped else (record,):
                    await mine.process(handler, each)
                handled += 1
                if handled >= FLUSH_EVERY or waiting.empty():
                    await flush()
