"""The executor's tables and topics in a worker: Faust's, and the loop that feeds it a stream."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, cast

from faust.streams import _current_event
from faust.types import AppT, StreamT, TopicT

from agents.executor import Executor, Headers
from app.commit_gate import CommitGate
from app.transactions import sending_for_inputs
from models.effects import Incoming, opened
from models.handlers import Handler

log = logging.getLogger(__name__)
#: records handled before held sends go out in any case: what bounds an envelope under load
FLUSH_EVERY = 200
#: how long an agent under at_least_once holds an internal send for others to join it
LINGER_S = 0.01


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


@dataclass(frozen=True, slots=True)
class _Where:
    topic: str
    partition: int


class _Consumed:
    """All Faust's tables read of the event being handled: its message's topic and partition."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Where(topic, partition)


@contextmanager
def consumed_from(topic: str, partition: int) -> Iterator[object]:
    """Inside, Faust's tables read and write the store and changelog of ``topic[partition]``, as for a record
    consumed there: where a message handed over in place (``agents.local_delivery``) is handled."""
    event = _Consumed(topic, partition)
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]  # Faust reads .message alone
    try:
        yield event
    finally:
        _current_event.reset(token)


async def consume(stream: StreamT, executor: Executor, handler: Handler, enveloped: bool = False) -> None:
    """Every record of the stream through the handler and the executor; with ``enveloped``, each message of
    an envelope (``models.envelope``) in turn.

    What the handler sends to internal topics is held, and sent in one envelope per destination partition
    every ``FLUSH_EVERY`` records and before every commit (``app.transactions.CommitGate``), so no offset is
    committed before its sends. Under exactly_once that costs no time: what a transaction holds is seen
    when it commits, and the worker has one transaction for all its inputs. Under at_least_once what is
    held goes out ``LINGER_S`` after the first of it. No commit falls inside a record's handling or a flush.
    What the handler sends to a partition this worker handles in place (``agents.local_delivery``) is handled
    before the next record; the messages of an internal topic handed over in place come to ``handler``.
    """
    app = stream.app
    gate: CommitGate = app.commit_gate  # type: ignore[attr-defined]  # app.faust_app.App has one
    transactional = app.in_transaction
    if enveloped and executor.local is not None:
        executor.local.serve(cast(TopicT, stream.channel).get_topic_name(), handler)
    holder = executor.for_loop(in_place=True)
    handled = 0
    timer: asyncio.TimerHandle | None = None
    lingering: set[asyncio.Task[None]] = set()

    async def flush() -> None:
        nonlocal handled, timer
        handled = 0
        if timer is not None:
            timer.cancel()
            timer = None
        with sending_for_inputs():
            await holder.flush()

    async def linger_over() -> None:
        async with gate.message():
            await flush()

    def start_flush() -> None:
        task = asyncio.ensure_future(linger_over())
        lingering.add(task)
        task.add_done_callback(_finished(lingering))

    with gate.flushing(flush, holder.envelopes.drop):
        async with _flushed_on_exit(app, flush, holder):
            async for event in stream.events():
                message = event.message
                async with gate.message():
                    if _fetched_before_a_rebalance(app, message):
                        continue
                    record = Incoming(message.topic, message.partition, message.offset, message.key, message.value,
                                      message.timestamp)
                    for each in opened(record) if enveloped else (record,):
                        await holder.process(handler, each)
                        await holder.deliver_in_place()
                    handled += 1
                    if handled >= FLUSH_EVERY:
                        await flush()
                    elif not transactional and timer is None and len(holder.envelopes):
                        timer = asyncio.get_running_loop().call_later(LINGER_S, start_flush)


def _fetched_before_a_rebalance(app: AppT, message: Any) -> bool:
    """Whether a record taken from the stream was fetched in an earlier group generation: it is skipped, as Faust
    skips one it takes out of its buffers then, and its partition's owner now handles it from the committed offset.

    An agent holding a record waits at the commit gate while a rebalance's last commit runs, and went on with it
    after the rebalance, for a partition that may have gone to another worker. Its sends then joined the new
    generation's transaction and were committed, while its table writes, to a partition no longer this
    worker's, were not: the new owner handled the record again, against state without the change, and an
    order was left waiting for a reply that its duplicate command could not give (test_cluster.py's
    worker-added test, once in seven runs with a quicker recovery).
    """
    generation = message.generation_id
    if generation is None or generation == app.consumer_generation_id:
        return False
    log.info("Skipped %s[%s]@%s: fetched in group generation %s, before the rebalance to %s; its partition's "
             "owner handles it", message.topic, message.partition, message.offset, generation,
             app.consumer_generation_id)
    return True


@asynccontextmanager
async def _flushed_on_exit(app: AppT, flush: Callable[[], Awaitable[None]],
                           holder: Executor) -> AsyncIterator[None]:
    """An agent that stops (or fails) sends what it holds; if it cannot, the worker stops before its next
    commit could commit the offsets of records whose sends were never made."""
    try:
        yield
    finally:
        if len(holder.envelopes):
            try:
                await flush()
            except Exception as exc:
                log.critical("could not send held messages; stopping the worker", exc_info=exc)
                await app.crash(exc)
                raise


def _finished(tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    """Forget a finished flush; say if it failed (what it could not send is held again, so the next
    flush or the commit's sends it, or the commit fails)."""

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sending held messages failed", exc_info=task.exception())

    return done
