"""When a worker commits: never inside a message, and under exactly_once as soon as it has handled all it had."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

Flusher = Callable[[], Awaitable[None]]
#: forgets what an agent holds; returns how many messages
Dropper = Callable[[], int]


class CommitGate:
    """Keeps a commit out of the middle of a message, and sends what the agents hold before it.

    Faust commits on a timer, whatever the agents are doing. A commit between a message's table
    writes and its sends would commit the change but leave the sends in the next transaction; a
    crash before that one commits aborts them, and the redelivered message then finds its change
    done and sends nothing. So a commit waits until no message is half done, and no message starts
    while a commit runs. Sends an agent holds in envelopes (``agents.envelopes``) belong to inputs
    whose offsets the commit may hold: each agent's flusher sends them first.
    """

    def __init__(self) -> None:
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()
        #: set when a message has been handled since the last commit began
        self._worked = asyncio.Event()
        self._handled = 0
        self._flushers: set[Flusher] = set()
        self._droppers: set[Dropper] = set()
        self._last: list[Flusher] = []

    def always(self, flusher: Flusher) -> None:
        """``flusher`` runs before every commit, after the agents' (a table's held changelog writes)."""
        self._last.append(flusher)

    @contextmanager
    def flushing(self, flusher: Flusher, dropper: Dropper | None = None) -> Iterator[None]:
        """While inside, ``flusher`` sends what an agent holds before each commit, and ``dropper`` forgets it
        when the transaction it belongs to is aborted (:meth:`drop_held`)."""
        self._flushers.add(flusher)
        if dropper is not None:
            self._droppers.add(dropper)
        try:
            yield
        finally:
            self._flushers.discard(flusher)
            if dropper is not None:
                self._droppers.discard(dropper)

    def drop_held(self) -> int:
        """Forget what the agents hold: under exactly_once, when the transaction of the inputs that made it is
        aborted at a rebalance, their table changes go with it, and the inputs are handled again by their
        next owner, which sends it again. Sent later, it would be committed without those changes."""
        return sum(dropper() for dropper in list(self._droppers))

    @asynccontextmanager
    async def message(self) -> AsyncIterator[None]:
        """Around the whole handling of one message."""
        await self._open.wait()
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            self._handled += 1
            self._worked.set()
            if not self._busy:
                self._idle.set()

    async def settled(self, quiet_s: float) -> None:
        """Until a message was handled since the last commit began, and then none ran for ``quiet_s``.

        A worker with more records fetched goes on to the next within microseconds; one that is quiet
        this long has handled all it had, and what it did can be committed without waiting for the timer.
        """
        while True:
            await self._worked.wait()
            await self._idle.wait()
            handled = self._handled
            await asyncio.sleep(quiet_s)
            if not self._busy and self._handled == handled and self._worked.is_set():
                return

    @asynccontextmanager
    async def commit(self) -> AsyncIterator[None]:
        """Around a commit: new messages wait, the ones under way finish first, then what is held is sent."""
        self._open.clear()
        try:
            await self._idle.wait()
            self._worked.clear()
            for flusher in [*self._flushers, *self._last]:
                await flusher()
            yield
        finally:
            self._open.set()

    async def flush(self) -> None:
        """Send what the agents hold, between messages (before an at_least_once commit)."""
        async with self.commit():
            pass


#: how long a worker under exactly_once must have had nothing to handle before it commits early
QUIET_S = 0.005
#: the least time from one commit to the next under exactly_once
MIN_COMMIT_GAP_S = 0.025


async def commit_due(gate: CommitGate, interval: float, *, early: bool) -> None:
    """Until the next commit is due: ``interval`` from now, or under ``early`` as soon as the worker is settled.

    A read_committed reader sees an outcome only when its transaction commits, and reads none of the
    orders written after the transaction's first write to their partition: waiting for the timer added
    up to a whole interval to each order under a light load. A busy worker is never quiet for
    ``QUIET_S``, so it commits on the timer as before; a quiet one commits at most every ``MIN_COMMIT_GAP_S``.
    """
    if not early:
        await asyncio.sleep(interval)
        return
    start = time.monotonic()
    try:
        await asyncio.wait_for(gate.settled(QUIET_S), interval)
    except TimeoutError:
        return
    await asyncio.sleep(start + MIN_COMMIT_GAP_S - time.monotonic())
