"""Internal messages for partitions this worker owns are handled in place, not sent through Kafka.

Under exactly_once every hop through an internal topic waits for the transaction that sent it to commit,
so a saga of six hops took six commit intervals. A command or reply whose destination partition this worker
owns, with its tables recovered, is handed straight to that partition's handler inside the same message,
so it joins the same transaction as the input that caused it: with one worker a whole saga is one hop. What
goes to another worker's partition still goes through Kafka. Ownership is taken away as soon as a rebalance
begins and given back only once the new assignment is recovered (``tables.recovery``), so a message is
handled in place only for a partition whose tables are here and current, in the generation the worker's
transaction commits in. Under at_least_once nothing is handed over: there a message's position on its
partition tells a redelivery from a duplicate, and a message handed over has none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

from models.handlers import Handler

#: messages one input may hand over in place before the rest go through Kafka: a safeguard against a reply
#: loop, which the saga's design rules out (it re-sends a request only while awaiting its reply)
MAX_IN_PLACE = 10_000

Context = Callable[[str, int], AbstractContextManager[object]]


def _no_context(topic: str, partition: int) -> AbstractContextManager[object]:
    return nullcontext()


class LocalDelivery:
    """Which internal partitions this worker handles in place, and each internal topic's handler.

    ``context(topic, partition)`` is entered around a message handled in place: in the worker it makes
    Faust's tables read and write that partition's store and changelog, as if the record had been consumed.
    """

    def __init__(self, context: Context = _no_context) -> None:
        self.context = context
        self.handlers: dict[str, Handler] = {}
        self._owned: frozenset[tuple[str, int]] = frozenset()

    def serve(self, topic: str, handler: Handler) -> None:
        """``handler`` handles the messages of internal topic ``topic`` (its full name) handed over in place."""
        self.handlers[topic] = handler

    def owns(self, topic: str, partition: int) -> bool:
        """Whether a message to ``topic[partition]`` is handled here, in place."""
        return (topic, partition) in self._owned and topic in self.handlers

    def take(self, partitions: Iterable[tuple[str, int]]) -> None:
        """The worker owns these partitions, recovered: those of the served topics are handled in place."""
        self._owned = frozenset(partitions)

    def give_up(self) -> None:
        """A rebalance began, or the worker stops: nothing is handled in place until the next :meth:`take`."""
        self._owned = frozenset()
