"""The bounded dedup memory keeps the newest entries and forgets the oldest past the window."""

from __future__ import annotations

from models.commands import CommitStock, ReserveStock
from models.memory import remember, remember_id
from models.stock import Stock, handle_stock


def test_remember_keeps_the_newest_within_the_limit() -> None:
    entries: dict[str, int] = {}
    for n in range(5):
        entries = remember(entries, f"k{n}", n, limit=3)
    assert entries == {"k2": 2, "k3": 3, "k4": 4}
    assert list(entries) == ["k2", "k3", "k4"]


def test_remember_does_not_change_what_it_was_given() -> None:
    entries = {"a": 1}
    assert remember(entries, "b", 2, limit=1) == {"b": 2}
    assert entries == {"a": 1}


def test_remember_id_keeps_the_last_ids() -> None:
    ids: tuple[str, ...] = ()
    for n in range(4):
        ids = remember_id(ids, f"e{n}", limit=2)
    assert ids == ("e2", "e3")


def test_a_busy_sku_stays_small_and_still_answers_recent_duplicates() -> None:
    stock = Stock(sku="S", available=1_000_000)
    for n in range(12_000):
        stock, _ = handle_stock(stock, ReserveStock(order_id=f"o{n}", sku="S", quantity=1))
        stock, _ = handle_stock(stock, CommitStock(order_id=f"o{n}", sku="S"))
    assert len(stock.finished) == 10_000 and stock.available == 1_000_000 - 12_000
    again, replies = handle_stock(stock, ReserveStock(order_id="o11999", sku="S", quantity=1))
    assert again is stock and [type(r).__name__ for r in replies] == ["StockReserved"]
