"""Stock of one sku: holds per order, never below zero, every change recorded by its cause."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from models.commands import CommitStock, Message, ReleaseStock, ReserveStock, StockRefused, StockReserved
from models.events import StockAdded
from models.evolve import evolve
from models.memory import remember, remember_id

COMMITTED = "C"
RELEASED = "R"
REFUSED = "X"
#: the dicts of what each order came to, kept in pages of the sku's memory (``models.paged``)
MEMORY = ("finished", "refusals")


@dataclass(frozen=True)
class Stock:
    """What one sku has: free units, holds by order, and the outcome of every finished order."""

    sku: str
    available: int = 0
    holds: dict[str, int] = field(default_factory=dict)
    finished: dict[str, str] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    added: tuple[str, ...] = ()
    #: position of the input that last changed this stock (``Incoming.position``): a duplicate at or
    #: before it is a redelivery
    last_input: int = -1

    @property
    def reserved(self) -> int:
        """Units held for orders still in progress."""
        return sum(self.holds.values())

    def to_json(self) -> bytes:
        """The table value."""
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, raw: bytes) -> Stock:
        """Read a table value written by :meth:`to_json`."""
        body: dict[str, Any] = orjson.loads(raw)
        body["added"] = tuple(body["added"])
        return cls(**body)

    def view(self) -> dict[str, Any]:
        """What ``GET /inventory/{sku}`` shows."""
        return {"sku": self.sku, "available": self.available, "reserved": self.reserved}


def handle_stock(stock: Stock, message: Message) -> tuple[Stock, list[Message]]:
    """Apply one message for this sku; a repeated one changes nothing and answers again."""
    if isinstance(message, StockAdded):
        if message.event_id in stock.added:
            return stock, []
        return evolve(
            stock, available=stock.available + message.quantity, added=remember_id(stock.added, message.event_id)
        ), []
    if isinstance(message, ReserveStock):
        return _reserve(stock, message)
    if isinstance(message, ReleaseStock):
        return _release(stock, message), []
    if isinstance(message, CommitStock):
        return _commit(stock, message), []
    raise TypeError(f"stock does not handle {type(message).__name__}")


def _reserve(stock: Stock, command: ReserveStock) -> tuple[Stock, list[Message]]:
    """Hold the whole quantity or refuse; an order seen before gets its first answer again."""
    reserved = StockReserved(order_id=command.order_id, sku=stock.sku, quantity=command.quantity)
    outcome = stock.finished.get(command.order_id)
    if command.order_id in stock.holds or outcome in (COMMITTED, RELEASED):
        return stock, [reserved]
    if outcome == REFUSED or command.quantity > stock.available:
        available = stock.refusals.get(command.order_id, stock.available)
        refused = StockRefused(
            order_id=command.order_id, sku=stock.sku, requested=command.quantity, available=available
        )
        if outcome == REFUSED:
            return stock, [refused]
        return evolve(
            stock,
            finished=remember(stock.finished, command.order_id, REFUSED),
            refusals=remember(stock.refusals, command.order_id, available),
        ), [refused]
    return evolve(
        stock,
        available=stock.available - command.quantity,
        holds={**stock.holds, command.order_id: command.quantity},
    ), [reserved]


def _release(stock: Stock, command: ReleaseStock) -> Stock:
    """Give a hold back; releasing an order never held only records that it is over."""
    if command.order_id in stock.finished:
        return stock
    holds = dict(stock.holds)
    quantity = holds.pop(command.order_id, 0)
    return evolve(
        stock,
        available=stock.available + quantity,
        holds=holds,
        finished=remember(stock.finished, command.order_id, RELEASED),
    )


def _commit(stock: Stock, command: CommitStock) -> Stock:
    """A held quantity is sold: it leaves the holds and never comes back."""
    if command.order_id not in stock.holds:
        return stock
    holds = dict(stock.holds)
    del holds[command.order_id]
    return evolve(stock, holds=holds, finished=remember(stock.finished, command.order_id, COMMITTED))
