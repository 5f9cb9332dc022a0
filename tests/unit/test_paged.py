"""A stock or wallet entry is stored as a small head and pages of its memory of orders (``models.paged``)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from models import handlers, paged
from models.commands import (
    ChargeWallet,
    CommitStock,
    Message,
    PaymentCharged,
    RefundWallet,
    ReleaseStock,
    ReserveStock,
)
from models.effects import Effects, Incoming
from models.events import FundsAdded, PaymentRefunded, StockAdded, format_time
from models.handlers import STOCK, WALLETS
from models.memory import DEDUP_WINDOW
from models.stock import COMMITTED, MEMORY, RELEASED, Stock
from models.wallet import MEMORY as WALLET_MEMORY
from models.wallet import Wallet

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
Tables = dict[tuple[str, str], bytes]


class Keeper:
    """Tables as a dict, fed through the real handlers one message after another."""

    def __init__(self) -> None:
        self.tables: Tables = {}
        self.offset = 0

    def feed(self, table: str, key: str, message: Message) -> Effects:
        self.offset += 1
        handler = handlers.stock(True) if table == STOCK else handlers.wallet(True)
        effects = handler(Incoming("t", 0, self.offset, key.encode(), message.encode(), NOW.timestamp()),
                          lambda t, k: self.tables.get((t, k)), NOW)
        for write in effects.writes:
            assert write.value is not None
            self.tables[(write.table, write.key)] = write.value
        return effects

    def items(self, table: str) -> list[tuple[str, bytes]]:
        return [(key, value) for (t, key), value in self.tables.items() if t == table]

    def head(self, table: str, key: str) -> bytes:
        return self.tables[(table, key)]


def stocked(quantity: int) -> Keeper:
    keeper = Keeper()
    keeper.feed(STOCK, "A", StockAdded(event_id="s-1", occurred_at=format_time(NOW), sku="A", quantity=quantity))
    return keeper


def test_page_keys_are_stable_marked_and_lead_back_to_their_head() -> None:
    key = paged.page_key("SKU-1", "o-1")
    assert key == paged.page_key("SKU-1", "o-1") and paged.is_page(key) and not paged.is_page("SKU-1")
    assert paged.head_of(key) == "SKU-1"
    assert len({paged.page_key("SKU-1", f"o-{n}") for n in range(5_000)}) == paged.PAGES


def test_an_order_s_entry_is_written_in_the_head_with_its_change_and_moves_to_its_page_with_the_next() -> None:
    keeper = stocked(10)
    keeper.feed(STOCK, "A", ReserveStock(order_id="o-1", sku="A", quantity=2))
    commit = keeper.feed(STOCK, "A", CommitStock(order_id="o-1", sku="A"))
    assert [w.key for w in commit.writes] == ["A"], "one write: a crash keeps both the sale and its record, or neither"
    head = Stock.from_json(keeper.head(STOCK, "A"))
    assert head.holds == {} and head.finished == {"o-1": COMMITTED}

    later = keeper.feed(STOCK, "A", ReleaseStock(order_id="o-2", sku="A"))
    assert [w.key for w in later.writes] == [paged.page_key("A", "o-1"), "A"], "the page first, then the head"
    assert Stock.from_json(keeper.head(STOCK, "A")).finished == {"o-2": RELEASED}
    assert Stock.from_json(keeper.tables[(STOCK, paged.page_key("A", "o-1"))]).finished == {"o-1": COMMITTED}
    again = keeper.feed(STOCK, "A", ReserveStock(order_id="o-1", sku="A", quantity=2))
    assert again.writes == (), "a duplicate, known from its page: nothing held again"
    assert paged.whole(keeper.items(STOCK), Stock, MEMORY)["A"].available == 8


def test_a_sku_that_takes_every_order_keeps_a_small_head_and_about_the_window_in_its_pages() -> None:
    orders = DEDUP_WINDOW + 2_000
    keeper = stocked(orders)
    for n in range(orders):
        keeper.feed(STOCK, "A", ReserveStock(order_id=f"o{n}", sku="A", quantity=1))
        keeper.feed(STOCK, "A", CommitStock(order_id=f"o{n}", sku="A"))
    assert len(keeper.head(STOCK, "A")) < 200
    pages = [Stock.from_json(value) for key, value in keeper.items(STOCK) if paged.is_page(key)]
    assert len(pages) == paged.PAGES and all(len(p.finished) <= paged.PAGE_LIMIT for p in pages)
    assert max(len(value) for _, value in keeper.items(STOCK)) < 10_000
    remembered = paged.whole(keeper.items(STOCK), Stock, MEMORY)["A"]
    assert DEDUP_WINDOW * 0.9 < len(remembered.finished) <= DEDUP_WINDOW + paged.PAGES
    assert remembered.available == 0
    keeper.feed(STOCK, "A", StockAdded(event_id="s-2", occurred_at=format_time(NOW), sku="A", quantity=1_000))
    for n in range(orders - 500, orders):  # recent duplicates are still known, and hold nothing again
        assert keeper.feed(STOCK, "A", ReserveStock(order_id=f"o{n}", sku="A", quantity=1)).writes == ()
    assert keeper.feed(STOCK, "A", ReserveStock(order_id="o0", sku="A", quantity=1)).writes != (), "o0 is forgotten"


def test_a_head_stored_before_pages_moves_its_entries_to_their_pages_at_its_next_change() -> None:
    keeper = Keeper()
    old = Stock(sku="A", available=5, finished={f"o{n}": COMMITTED for n in range(500)},
                refusals={"o-x": 0}, last_input=0)
    keeper.tables[(STOCK, "A")] = old.to_json()
    keeper.feed(STOCK, "A", ReleaseStock(order_id="o-new", sku="A"))
    head = Stock.from_json(keeper.head(STOCK, "A"))
    assert head.finished == {"o-new": RELEASED} and head.refusals == {}
    whole = paged.whole(keeper.items(STOCK), Stock, MEMORY)["A"]
    assert whole.finished == {**old.finished, "o-new": RELEASED} and whole.refusals == {"o-x": 0}
    assert keeper.feed(STOCK, "A", CommitStock(order_id="o7", sku="A")).writes == (), "still remembered"


def test_a_refund_finds_the_charge_in_its_page() -> None:
    keeper = Keeper()
    keeper.feed(WALLETS, "c-1", FundsAdded(event_id="f-1", occurred_at=format_time(NOW), customer_id="c-1",
                                           amount=Decimal("100.00")))
    charged = keeper.feed(WALLETS, "c-1", ChargeWallet(order_id="o-1", customer_id="c-1", amount=Decimal("30.00")))
    assert PaymentCharged(order_id="o-1", amount=Decimal("30.00")) in [s.message for s in charged.sends]
    keeper.feed(WALLETS, "c-1", ChargeWallet(order_id="o-2", customer_id="c-1", amount=Decimal("5.00")))
    assert "o-1" not in Wallet.from_json(keeper.head(WALLETS, "c-1")).charges, "moved to its page"
    refunded = keeper.feed(WALLETS, "c-1", RefundWallet(order_id="o-1", customer_id="c-1", amount=Decimal("30.00")))
    assert [s.message.amount for s in refunded.sends if isinstance(s.message, PaymentRefunded)] == [Decimal("30.00")]
    wallet = paged.whole(keeper.items(WALLETS), Wallet, WALLET_MEMORY)["c-1"]
    assert wallet.balance == Decimal("95.00")
    assert wallet.charges == {"o-1": Decimal("30.00"), "o-2": Decimal("5.00")}
    assert wallet.refunds == {"o-1": Decimal("30.00")}
