"""Bounded memory of what a key has already applied, so per-key state stays small.

Duplicates arrive within the redelivery window (offsets not yet committed, replies re-sent
while a saga still waits), which is seconds of traffic; the oldest entries beyond the window
are forgotten so a hot sku or a busy wallet does not grow without end.
"""

from __future__ import annotations

from typing import TypeVar

#: Finished orders (and processed event ids) each stock and wallet entry remembers.
DEDUP_WINDOW = 10_000

V = TypeVar("V")


def remember(entries: dict[str, V], key: str, value: V, limit: int = DEDUP_WINDOW) -> dict[str, V]:
    """``entries`` with ``key`` set, the oldest dropped beyond ``limit``."""
    out = {**entries, key: value}
    for old in list(out)[: max(len(out) - limit, 0)]:
        del out[old]
    return out


def remember_id(ids: tuple[str, ...], new: str, limit: int = DEDUP_WINDOW) -> tuple[str, ...]:
    """``ids`` with ``new`` appended, the oldest dropped beyond ``limit``."""
    return (*ids, new)[-limit:]
