"""models.stock: one sku's free units and holds; never below zero, every answer repeatable."""

from __future__ import annotations

import random

import pytest

from models.commands import CommitStock, ReleaseStock, ReserveStock, StockRefused, StockReserved
from models.events import StockAdded
from models.stock import COMMITTED, REFUSED, RELEASED, Stock, handle_stock

SKU = "sku-1"


def added(quantity: int, event_id: str = "add-1") -> StockAdded:
    return StockAdded(event_id=event_id, occurred_at="2024-05-06T07:08:09.000Z", sku=SKU, quantity=quantity)


def reserve(order_id: str, quantity: int) -> ReserveStock:
    return ReserveStock(order_id=order_id, sku=SKU, quantity=quantity)


def release(order_id: str) -> ReleaseStock:
    return ReleaseStock(order_id=order_id, sku=SKU)


def commit(order_id: str) -> CommitStock:
    return CommitStock(order_id=order_id, sku=SKU)


def stock_with(available: int) -> Stock:
    stock, out = handle_stock(Stock(sku=SKU), added(available))
    assert out == []
    return stock


def apply(stock: Stock, *messages: object) -> tuple[Stock, list[object]]:
    sent: list[object] = []
    for message in messages:
        stock, out = handle_stock(stock, message)  # type: ignore[arg-type]
        sent += out
    return stock, sent


# --- adding stock ------------------------------------------------------------------------------


def test_new_stock_is_empty() -> None:
    stock = Stock(sku=SKU)
    assert (stock.available, stock.reserved, stock.holds) == (0, 0, {})


def test_stock_added_increases_available() -> None:
    stock, out = apply(Stock(sku=SKU), added(5, "a"), added(7, "b"))
    assert stock.available == 12
    assert out == []


def test_stock_added_twice_with_the_same_event_id_counts_once() -> None:
    stock, _ = apply(Stock(sku=SKU), added(5, "a"), added(5, "a"), added(5, "a"))
    assert stock.available == 5
    assert stock.added == ("a",)


# --- reserving ---------------------------------------------------------------------------------


def test_reserve_with_enough_stock_holds_it() -> None:
    stock, out = handle_stock(stock_with(10), reserve("o-1", 4))
    assert out == [StockReserved(order_id="o-1", sku=SKU, quantity=4)]
    assert stock.available == 6
    assert stock.holds == {"o-1": 4}
    assert stock.reserved == 4


def test_reserve_exactly_what_is_there() -> None:
    stock, out = handle_stock(stock_with(3), reserve("o-1", 3))
    assert out == [StockReserved(order_id="o-1", sku=SKU, quantity=3)]
    assert (stock.available, stock.reserved) == (0, 3)


def test_reserve_more_than_available_is_refused_and_takes_nothing() -> None:
    stock, out = handle_stock(stock_with(2), reserve("o-1", 3))
    assert out == [StockRefused(order_id="o-1", sku=SKU, requested=3, available=2)]
    assert stock.available == 2
    assert stock.holds == {}
    assert stock.finished == {"o-1": REFUSED}


def test_reserve_on_empty_stock_is_refused_with_zero_available() -> None:
    _, out = handle_stock(Stock(sku=SKU), reserve("o-1", 1))
    assert out == [StockRefused(order_id="o-1", sku=SKU, requested=1, available=0)]


def test_reserve_the_same_order_twice_holds_once_and_answers_the_same() -> None:
    first, out1 = handle_stock(stock_with(10), reserve("o-1", 4))
    second, out2 = handle_stock(first, reserve("o-1", 4))
    assert out2 == out1 == [StockReserved(order_id="o-1", sku=SKU, quantity=4)]
    assert second == first
    assert second.available == 6 and second.holds == {"o-1": 4}


def test_refused_order_asked_again_gets_the_same_refusal_even_after_restock() -> None:
    refused, out1 = handle_stock(stock_with(2), reserve("o-1", 3))
    restocked, _ = handle_stock(refused, added(10, "add-2"))
    again, out2 = handle_stock(restocked, reserve("o-1", 3))
    assert out2 == out1 == [StockRefused(order_id="o-1", sku=SKU, requested=3, available=2)]
    assert again == restocked, "a refusal is final: no hold taken on a re-ask"
    assert again.available == 12


def test_refusal_remembers_what_was_available_at_the_time() -> None:
    stock, _ = apply(stock_with(2), reserve("o-1", 3))
    stock, _ = apply(stock, reserve("o-2", 1))  # available drops to 1
    _, out = handle_stock(stock, reserve("o-1", 3))
    assert out == [StockRefused(order_id="o-1", sku=SKU, requested=3, available=2)]


def test_several_orders_never_take_stock_below_zero() -> None:
    stock, out = apply(stock_with(5), reserve("o-1", 3), reserve("o-2", 3), reserve("o-3", 2))
    assert out == [
        StockReserved(order_id="o-1", sku=SKU, quantity=3),
        StockRefused(order_id="o-2", sku=SKU, requested=3, available=2),
        StockReserved(order_id="o-3", sku=SKU, quantity=2),
    ]
    assert stock.available == 0
    assert stock.holds == {"o-1": 3, "o-3": 2}


# --- releasing ---------------------------------------------------------------------------------


def test_release_gives_the_hold_back() -> None:
    stock, out = apply(stock_with(10), reserve("o-1", 4), release("o-1"))
    assert out == [StockReserved(order_id="o-1", sku=SKU, quantity=4)]  # release itself says nothing
    assert stock.available == 10
    assert stock.holds == {}
    assert stock.finished == {"o-1": RELEASED}


def test_release_twice_gives_back_once() -> None:
    once, _ = apply(stock_with(10), reserve("o-1", 4), release("o-1"))
    twice, out = handle_stock(once, release("o-1"))
    assert twice == once
    assert out == []
    assert twice.available == 10


def test_release_after_commit_does_nothing() -> None:
    committed, _ = apply(stock_with(10), reserve("o-1", 4), commit("o-1"))
    after, out = handle_stock(committed, release("o-1"))
    assert after == committed and out == []
    assert after.available == 6


def test_release_of_a_refused_order_does_nothing() -> None:
    refused, _ = apply(stock_with(1), reserve("o-1", 3))
    after, out = handle_stock(refused, release("o-1"))
    assert after == refused and out == []
    assert after.finished == {"o-1": REFUSED}


def test_release_before_reserve_leaves_a_tombstone_and_a_later_reserve_takes_nothing() -> None:
    released, out = handle_stock(stock_with(10), release("o-1"))
    assert out == []
    assert released.available == 10
    assert released.finished == {"o-1": RELEASED}
    after, out = handle_stock(released, reserve("o-1", 4))
    assert after == released, "no hold is taken for an order already released"
    assert after.available == 10 and after.holds == {}
    assert out == [StockReserved(order_id="o-1", sku=SKU, quantity=4)]


def test_reserve_after_release_answers_again_without_holding() -> None:
    released, _ = apply(stock_with(10), reserve("o-1", 4), release("o-1"))
    after, out = handle_stock(released, reserve("o-1", 4))
    assert after == released
    assert after.available == 10 and after.reserved == 0
    assert out == [StockReserved(order_id="o-1", sku=SKU, quantity=4)]


# --- committing --------------------------------------------------------------------------------


def test_commit_keeps_the_stock_taken() -> None:
    stock, out = apply(stock_with(10), reserve("o-1", 4), commit("o-1"))
    assert out == [StockReserved(order_id="o-1", sku=SKU, quantity=4)]
    assert stock.available == 6
    assert stock.holds == {}
    assert stock.reserved == 0
    assert stock.finished == {"o-1": COMMITTED}


def test_commit_twice_is_one_commit() -> None:
    once, _ = apply(stock_with(10), reserve("o-1", 4), commit("o-1"))
    twice, out = handle_stock(once, commit("o-1"))
    assert twice == once and out == []


def test_commit_after_release_does_nothing() -> None:
    released, _ = apply(stock_with(10), reserve("o-1", 4), release("o-1"))
    after, out = handle_stock(released, commit("o-1"))
    assert after == released and out == []
    assert after.available == 10
    assert after.finished == {"o-1": RELEASED}


def test_commit_of_an_unknown_order_does_nothing() -> None:
    stock = stock_with(10)
    after, out = handle_stock(stock, commit("o-9"))
    assert after == stock and out == []


def test_reserve_after_commit_answers_again_without_taking_more() -> None:
    committed, _ = apply(stock_with(10), reserve("o-1", 4), commit("o-1"))
    after, out = handle_stock(committed, reserve("o-1", 4))
    assert after == committed
    assert after.available == 6
    assert out == [StockReserved(order_id="o-1", sku=SKU, quantity=4)]


# --- other messages, storage, view -------------------------------------------------------------


def test_unhandled_message_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="stock does not handle StockReserved"):
        handle_stock(Stock(sku=SKU), StockReserved(order_id="o-1", sku=SKU, quantity=1))


def test_json_round_trip() -> None:
    stock, _ = apply(
        Stock(sku=SKU),
        added(10, "a"),
        added(3, "b"),
        reserve("o-1", 4),
        reserve("o-2", 2),
        reserve("o-3", 100),
        commit("o-1"),
        release("o-4"),
    )
    again = Stock.from_json(stock.to_json())
    assert again == stock
    assert again.added == ("a", "b") and isinstance(again.added, tuple)
    assert again.holds == {"o-2": 2}
    assert again.finished == {"o-1": COMMITTED, "o-3": REFUSED, "o-4": RELEASED}
    assert again.refusals == {"o-3": 7}
    # the restored stock behaves the same
    assert handle_stock(again, added(3, "b")) == (again, [])
    assert handle_stock(again, reserve("o-3", 100))[1] == handle_stock(stock, reserve("o-3", 100))[1]


def test_json_round_trip_of_empty_stock() -> None:
    assert Stock.from_json(Stock(sku="tasse-café").to_json()) == Stock(sku="tasse-café")


def test_view() -> None:
    stock, _ = apply(stock_with(10), reserve("o-1", 4), reserve("o-2", 1))
    view = stock.view()
    assert view == {"sku": SKU, "available": 5, "reserved": 5}
    assert all(type(view[k]) is int for k in ("available", "reserved"))


def test_random_sequences_never_go_below_zero_and_conserve_units() -> None:
    """available + held + sold == added, and available never negative, whatever the order of messages."""
    rng = random.Random(20240506)
    for _ in range(200):
        stock = Stock(sku=SKU)
        added_total = sold = 0
        for step in range(60):
            roll = rng.random()
            order = f"o-{rng.randint(1, 8)}"
            message: object
            if roll < 0.2:
                event_id = f"add-{rng.randint(1, 10)}"
                quantity = rng.randint(1, 5)
                if event_id not in stock.added:
                    added_total += quantity
                message = added(quantity, event_id)
            elif roll < 0.6:
                message = reserve(order, rng.randint(1, 6))
            elif roll < 0.8:
                message = release(order)
            else:
                message = commit(order)
            before = stock
            stock, out = handle_stock(stock, message)  # type: ignore[arg-type]
            if isinstance(message, CommitStock) and order in before.holds:
                sold += before.holds[order]
            assert stock.available >= 0, f"below zero at step {step}"
            assert all(q > 0 for q in stock.holds.values())
            assert not set(stock.holds) & set(stock.finished), "an order is either held or finished"
            assert all(isinstance(reply, (StockReserved, StockRefused)) for reply in out)
            assert len(out) == (1 if isinstance(message, ReserveStock) else 0)
        assert stock.available + stock.reserved + sold == added_total
