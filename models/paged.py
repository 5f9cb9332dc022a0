"""A stock or wallet entry stored as a small head and pages of its memory of orders, so a hot key stays cheap.

The domain records (``Stock``, ``Wallet``) keep what each order came to (finished, refused, charged,
refunded, declined) in dicts by order id, up to ``DEDUP_WINDOW`` entries. Stored in the key's one
value, a sku that takes every order was read, parsed and written whole, up to half a megabyte, at each
change. Here those entries sit in ``PAGES`` pages of the same key, chosen by a hash of the order id,
each keeping its newest ``PAGE_LIMIT`` entries per dict, so the key still remembers about
``DEDUP_WINDOW`` orders; a message reads its head and its order's page only.

An order's new entries are written in the head, with the change that made them: one value, so a crash
cannot keep the one without the other. The key's next change moves them to their page (page first,
then the head without them), so the head carries one order's entries at most. Pages live in the same
table and partition as their head, and are written in the same transaction.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Protocol, Self, TypeVar

from models.effects import Reader, Write
from models.evolve import evolve
from models.memory import DEDUP_WINDOW

#: pages a key's memory of orders is spread over
PAGES = 256
#: entries each page keeps per dict: together about DEDUP_WINDOW
PAGE_LIMIT = -(-DEDUP_WINDOW // PAGES)
#: starts every page key, and no head key: ids holding it are refused (``models.events``)
PAGE_MARK = "\x00"


class Paged(Protocol):
    """A domain record with dicts of what each order came to."""

    def to_json(self) -> bytes: ...
    @classmethod
    def from_json(cls, raw: bytes) -> Self: ...


R = TypeVar("R", bound=Paged)


def page_key(key: str, order_id: str) -> str:
    """The key of the page of ``key``'s memory that holds ``order_id``."""
    return f"{PAGE_MARK}{key}{PAGE_MARK}{zlib.crc32(order_id.encode()) % PAGES:03d}"


def is_page(key: str) -> bool:
    """Whether a table key is a page, not a head."""
    return key.startswith(PAGE_MARK)


def head_of(page: str) -> str:
    """The head key a page key belongs to."""
    return page[len(PAGE_MARK):].rpartition(PAGE_MARK)[0]


def load(read: Reader, table: str, key: str, blank: R, fields: tuple[str, ...], order_id: str | None) -> tuple[R, R]:
    """The head as stored (``blank`` if none), and the record a handler works on: the head with ``order_id``'s
    page under it (the head's entries are newer; none without an order id)."""
    stored = read(table, key)
    head = type(blank).from_json(stored) if stored is not None else blank
    if order_id is None:
        return head, head
    raw = read(table, page_key(key, order_id))
    if raw is None:
        return head, head
    page = type(blank).from_json(raw)
    return head, evolve(head, **{f: {**getattr(page, f), **getattr(head, f)} for f in fields})


def store(read: Reader, table: str, key: str, head: R, new: R, blank: R, fields: tuple[str, ...],
          order_id: str | None) -> list[Write]:
    """The writes that keep ``new``: the entries the stored head carried go to their pages, then the head,
    with ``order_id``'s entries only. Without an order id the head keeps what it carries.

    A head stored before pages existed carries entries of many orders: they move to their pages here.
    """
    if order_id is None:
        return [Write(table, key, new.to_json())]
    writes = []
    for page, carried in _entries_by_page(key, head, fields).items():
        raw = read(table, page)
        stored = type(blank).from_json(raw) if raw is not None else blank
        entries = {f: _bounded({**getattr(stored, f), **carried[f]}) for f in fields}
        if any(entries[f] != getattr(stored, f) for f in fields):
            writes.append(Write(table, page, evolve(blank, **entries).to_json()))
    own = {f: {order_id: getattr(new, f)[order_id]} if order_id in getattr(new, f) else {} for f in fields}
    writes.append(Write(table, key, evolve(new, **own).to_json()))
    return writes


def whole(items: Iterable[tuple[str, bytes]], kind: type[R], fields: tuple[str, ...]) -> dict[str, R]:
    """Each head among a table's items with all its pages under it: everything a key remembers (checks, tests)."""
    listed = list(items)
    heads = {key: kind.from_json(value) for key, value in listed if not is_page(key)}
    paged: dict[str, dict[str, dict[str, object]]] = {key: {f: {} for f in fields} for key in heads}
    for key, value in listed:
        if is_page(key):
            page = kind.from_json(value)
            for f in fields:
                paged[head_of(key)][f].update(getattr(page, f))
    return {key: evolve(head, **{f: {**paged[key][f], **getattr(head, f)} for f in fields})
            for key, head in heads.items()}


def _entries_by_page(key: str, head: Paged, fields: tuple[str, ...]) -> dict[str, dict[str, dict[str, object]]]:
    """The entries a stored head carries, grouped by the page each belongs to."""
    grouped: dict[str, dict[str, dict[str, object]]] = {}
    for f in fields:
        for order_id, value in getattr(head, f).items():
            grouped.setdefault(page_key(key, order_id), {g: {} for g in fields})[f][order_id] = value
    return grouped


def _bounded(entries: dict[str, object]) -> dict[str, object]:
    """The newest ``PAGE_LIMIT`` entries."""
    if len(entries) <= PAGE_LIMIT:
        return entries
    return dict(list(entries.items())[-PAGE_LIMIT:])
