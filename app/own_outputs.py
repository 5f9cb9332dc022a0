"""The consumer drops the app's own outputs from the public topics before Faust handles them.

Ingress reads every public input topic, and most records there are what the app wrote itself
(``OrderConfirmed``, ``InventoryReserved``, ...), which ingress ignores. Faust's path from the fetch
to an agent costs far more per record than our handling (``make profile``), so a record the app
marked as its own output (``models.handlers.skippable``) leaves the fetch unseen by any agent.

Its offset must still be committed, and never before a record ahead of it on its partition: Faust
commits every acked offset up to the first one missing (and, on a partition never committed, without
looking for holes). So a skipped offset is acked once the last record delivered before it on its
partition is, or at once if that one is acked already.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from faust.types import TP
from faust.types.transports import SchedulingStrategyT

from models.handlers import skippable


class SkippedAcks:
    """When a skipped offset may be acked: once the last record delivered before it on its partition is.

    ``is_acked(tp, offset)`` says whether Faust counts a delivered record as done; Faust's stream acks
    records in its own (compiled) code, so what waits is released when a commit asks (:meth:`release`).
    """

    def __init__(self, is_acked: Callable[[TP, int], bool]) -> None:
        self.is_acked = is_acked
        self._delivered: dict[TP, int] = {}
        self._waiting: dict[TP, dict[int, list[int]]] = {}

    def delivered(self, tp: TP, offset: int) -> None:
        """A record goes on to the agents."""
        self._delivered[tp] = offset

    def skipped(self, tp: TP, offset: int) -> bool:
        """Whether a skipped offset may be acked now; if not, :meth:`release` gives it back later."""
        before = self._delivered.get(tp)
        if before is None or self.is_acked(tp, before):
            return True
        self._waiting.setdefault(tp, {}).setdefault(before, []).append(offset)
        return False

    def release(self, tp: TP) -> list[int]:
        """The skipped offsets of a partition whose records before them are now acked, in order."""
        waiting = self._waiting.get(tp)
        released: list[int] = []
        while waiting:
            before = min(waiting)
            if not self.is_acked(tp, before):
                break
            released += waiting.pop(before)
        return released

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions revoked: what was delivered or waits there is another generation's business."""
        for tp in tps:
            self._delivered.pop(tp, None)
            self._waiting.pop(tp, None)

    def waiting(self) -> int:
        """How many skipped offsets wait for an ack."""
        return sum(len(offsets) for by_tp in self._waiting.values() for offsets in by_tp.values())


class Host(Protocol):
    """The consumer a :class:`SkippingScheduler` works for."""

    skipped_acks: SkippedAcks

    def own_outputs(self) -> Mapping[str, frozenset[str]]:
        """Full public topic name -> the event types the app writes there and ingress ignores."""

    def generation(self) -> int:
        """The consumer group generation now."""

    def deliverable(self, tp: TP, generation: int) -> bool:
        """Faust's own test of whether a record it takes next goes to the agents: flow active, the
        generation it began the fetch in, partition active."""

    def skip(self, tp: TP, offset: int) -> None:
        """Count the offset as read, and ack it now or when :class:`SkippedAcks` says."""


class SkippingScheduler(SchedulingStrategyT):
    """Faust's scheduler, dropping the app's own outputs as the records leave the fetch.

    A record Faust would not deliver (``Host.deliverable``) is left to Faust, and nothing later on its
    partition in the same fetch is skipped: the record before it was not delivered.
    """

    def __init__(self, inner: SchedulingStrategyT, host: Host) -> None:
        self.inner, self.host = inner, host

    def iterate(self, records: Mapping[TP, list[Any]]) -> Iterator[tuple[TP, Any]]:
        """Faust's order, without the skippable records."""
        host = self.host
        own_outputs = host.own_outputs()
        if not own_outputs:
            yield from self.inner.iterate(records)
            return
        generation = host.generation()
        held_back: set[TP] = set()
        for tp, record in self.inner.iterate(records):
            own = own_outputs.get(tp.topic)
            if own is not None and tp not in held_back:
                if not host.deliverable(tp, generation):
                    held_back.add(tp)
                elif skippable(own, record.headers, record.value):
                    host.skip(tp, record.offset)
                    continue
                else:
                    host.skipped_acks.delivered(tp, record.offset)
            yield tp, record
