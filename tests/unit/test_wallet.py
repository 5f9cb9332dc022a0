"""models.wallet: a customer's balance; never below zero, each order charged at most once, refunded once."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from models.commands import ChargeWallet, PaymentCharged, PaymentDeclined, RefundWallet
from models.events import FundsAdded, PaymentFailed, PaymentProcessed, PaymentRefunded, derived_event_id
from models.wallet import INSUFFICIENT_FUNDS, ORDER_CANCELLED, Wallet, handle_wallet

CUSTOMER = "c-1"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
STAMP = "2024-05-06T07:08:09.000Z"


def funds(amount: str, event_id: str = "fund-1") -> FundsAdded:
    return FundsAdded(event_id=event_id, occurred_at=STAMP, customer_id=CUSTOMER, amount=Decimal(amount))


def charge(order_id: str, amount: str) -> ChargeWallet:
    return ChargeWallet(order_id=order_id, customer_id=CUSTOMER, amount=Decimal(amount))


def refund(order_id: str, amount: str) -> RefundWallet:
    return RefundWallet(order_id=order_id, customer_id=CUSTOMER, amount=Decimal(amount))


def wallet_with(amount: str) -> Wallet:
    wallet, out = handle_wallet(Wallet(customer_id=CUSTOMER), funds(amount), NOW)
    assert out == []
    return wallet


def apply(wallet: Wallet, *messages: object) -> tuple[Wallet, list[object]]:
    sent: list[object] = []
    for message in messages:
        wallet, out = handle_wallet(wallet, message, NOW)  # type: ignore[arg-type]
        sent += out
    return wallet, sent


def processed(order_id: str, amount: str) -> PaymentProcessed:
    return PaymentProcessed(
        event_id=derived_event_id(order_id, "PaymentProcessed"),
        occurred_at=STAMP,
        order_id=order_id,
        customer_id=CUSTOMER,
        amount=Decimal(amount),
    )


def failed(order_id: str, amount: str, reason: str) -> PaymentFailed:
    return PaymentFailed(
        event_id=derived_event_id(order_id, "PaymentFailed"),
        occurred_at=STAMP,
        order_id=order_id,
        customer_id=CUSTOMER,
        amount=Decimal(amount),
        reason=reason,
    )


def refunded(order_id: str, amount: str) -> PaymentRefunded:
    return PaymentRefunded(
        event_id=derived_event_id(order_id, "PaymentRefunded"),
        occurred_at=STAMP,
        order_id=order_id,
        customer_id=CUSTOMER,
        amount=Decimal(amount),
    )


# --- funding -----------------------------------------------------------------------------------


def test_new_wallet_is_empty() -> None:
    wallet = Wallet(customer_id=CUSTOMER)
    assert wallet.balance == Decimal("0.00")
    assert wallet.view() == {"customer_id": CUSTOMER, "balance": "0.00"}


def test_funds_add_up() -> None:
    wallet, out = apply(Wallet(customer_id=CUSTOMER), funds("10.50", "a"), funds("0.25", "b"))
    assert wallet.balance == Decimal("10.75")
    assert out == []


def test_funds_with_the_same_event_id_count_once() -> None:
    wallet, _ = apply(Wallet(customer_id=CUSTOMER), funds("10.00", "a"), funds("10.00", "a"))
    assert wallet.balance == Decimal("10.00")
    assert wallet.funded == ("a",)


# --- charging ----------------------------------------------------------------------------------


def test_charge_with_enough_funds() -> None:
    wallet, out = handle_wallet(wallet_with("50.00"), charge("o-1", "19.99"), NOW)
    assert out == [processed("o-1", "19.99"), PaymentCharged(order_id="o-1", amount=Decimal("19.99"))]
    assert wallet.balance == Decimal("30.01")
    assert wallet.charges == {"o-1": Decimal("19.99")}


def test_charge_of_the_whole_balance_leaves_zero() -> None:
    wallet, out = handle_wallet(wallet_with("19.99"), charge("o-1", "19.99"), NOW)
    assert wallet.balance == Decimal("0.00")
    assert isinstance(out[1], PaymentCharged)


def test_charge_with_insufficient_funds_is_declined_and_changes_no_balance() -> None:
    start = wallet_with("10.00")
    wallet, out = handle_wallet(start, charge("o-1", "10.01"), NOW)
    assert out == [
        failed("o-1", "10.01", INSUFFICIENT_FUNDS),
        PaymentDeclined(order_id="o-1", reason=INSUFFICIENT_FUNDS),
    ]
    assert wallet.balance == Decimal("10.00")
    assert wallet.charges == {}
    assert wallet.declines == {"o-1": INSUFFICIENT_FUNDS}


def test_charge_twice_charges_once_with_the_same_answer() -> None:
    once, out1 = handle_wallet(wallet_with("50.00"), charge("o-1", "20.00"), NOW)
    twice, out2 = handle_wallet(once, charge("o-1", "20.00"), NOW)
    assert twice == once
    assert twice.balance == Decimal("30.00")
    assert out2 == out1
    processed_ids = [e.event_id for e in out2 if isinstance(e, PaymentProcessed)]
    assert processed_ids == [derived_event_id("o-1", "PaymentProcessed")]


def test_declined_order_stays_declined_after_new_funds() -> None:
    declined, out1 = handle_wallet(wallet_with("5.00"), charge("o-1", "20.00"), NOW)
    funded, _ = handle_wallet(declined, funds("100.00", "fund-2"), NOW)
    again, out2 = handle_wallet(funded, charge("o-1", "20.00"), NOW)
    assert out2 == out1
    assert again == funded
    assert again.balance == Decimal("105.00")


def test_orders_are_charged_independently() -> None:
    wallet, out = apply(wallet_with("30.00"), charge("o-1", "20.00"), charge("o-2", "20.00"), charge("o-3", "10.00"))
    assert [type(m).__name__ for m in out] == [
        "PaymentProcessed", "PaymentCharged", "PaymentFailed", "PaymentDeclined", "PaymentProcessed", "PaymentCharged",
    ]
    assert wallet.balance == Decimal("0.00")


def test_zero_amount_order_is_charged_nothing() -> None:
    wallet, out = handle_wallet(Wallet(customer_id=CUSTOMER), charge("o-1", "0.00"), NOW)
    assert isinstance(out[1], PaymentCharged)
    assert wallet.balance == Decimal("0.00")


# --- refunding ---------------------------------------------------------------------------------


def test_refund_gives_the_charge_back() -> None:
    wallet, out = apply(wallet_with("50.00"), charge("o-1", "20.00"), refund("o-1", "20.00"))
    assert wallet.balance == Decimal("50.00")
    assert wallet.refunds == {"o-1": Decimal("20.00")}
    assert out[-1] == refunded("o-1", "20.00")


def test_refund_twice_restores_the_balance_once() -> None:
    once, out1 = apply(wallet_with("50.00"), charge("o-1", "20.00"), refund("o-1", "20.00"))
    twice, out2 = handle_wallet(once, refund("o-1", "20.00"), NOW)
    assert twice == once
    assert twice.balance == Decimal("50.00")
    assert out2 == [refunded("o-1", "20.00")], "a repeated refund answers again with the same event id"


def test_refund_gives_back_what_was_charged_not_what_is_asked() -> None:
    wallet, out = apply(wallet_with("50.00"), charge("o-1", "20.00"), refund("o-1", "45.00"))
    assert wallet.balance == Decimal("50.00")
    assert out[-1] == refunded("o-1", "20.00")


def test_refund_of_a_declined_order_gives_nothing_and_says_nothing() -> None:
    declined, _ = handle_wallet(wallet_with("5.00"), charge("o-1", "20.00"), NOW)
    wallet, out = handle_wallet(declined, refund("o-1", "20.00"), NOW)
    assert out == []
    assert wallet.balance == Decimal("5.00")


def test_refund_before_charge_bars_a_later_charge() -> None:
    barred, out = handle_wallet(wallet_with("50.00"), refund("o-1", "20.00"), NOW)
    assert out == []
    assert barred.balance == Decimal("50.00")
    assert barred.refunds == {"o-1": Decimal("0.00")}
    wallet, out = handle_wallet(barred, charge("o-1", "20.00"), NOW)
    assert out == [failed("o-1", "20.00", ORDER_CANCELLED), PaymentDeclined(order_id="o-1", reason=ORDER_CANCELLED)]
    assert wallet.balance == Decimal("50.00")
    assert wallet.charges == {}
    # and it stays barred
    again, out2 = handle_wallet(wallet, charge("o-1", "20.00"), NOW)
    assert again == wallet and out2 == out


def test_charge_after_refund_of_a_charged_order_answers_charged_and_takes_nothing() -> None:
    wallet, _ = apply(wallet_with("50.00"), charge("o-1", "20.00"), refund("o-1", "20.00"))
    after, out = handle_wallet(wallet, charge("o-1", "20.00"), NOW)
    assert after == wallet
    assert after.balance == Decimal("50.00")
    assert out == [processed("o-1", "20.00"), PaymentCharged(order_id="o-1", amount=Decimal("20.00"))]


# --- other messages, storage, view -------------------------------------------------------------


def test_unhandled_message_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="wallet does not handle PaymentCharged"):
        handle_wallet(Wallet(customer_id=CUSTOMER), PaymentCharged(order_id="o-1", amount=Decimal("1.00")), NOW)


def test_json_round_trip() -> None:
    wallet, _ = apply(
        Wallet(customer_id=CUSTOMER),
        funds("100.00", "a"),
        funds("0.10", "b"),
        charge("o-1", "20.00"),
        charge("o-2", "500.00"),
        refund("o-1", "20.00"),
        refund("o-3", "1.00"),
        charge("o-3", "1.00"),
        charge("o-4", "0.05"),
    )
    again = Wallet.from_json(wallet.to_json())
    assert again == wallet
    assert again.balance == Decimal("100.05")
    assert again.funded == ("a", "b") and isinstance(again.funded, tuple)
    assert again.charges == {"o-1": Decimal("20.00"), "o-4": Decimal("0.05")}
    assert again.refunds == {"o-1": Decimal("20.00"), "o-3": Decimal("0.00")}
    assert again.declines == {"o-2": INSUFFICIENT_FUNDS, "o-3": ORDER_CANCELLED}
    # and the restored wallet answers the same way
    for message in (charge("o-2", "500.00"), charge("o-3", "1.00"), refund("o-1", "20.00"), funds("1.00", "a")):
        assert handle_wallet(again, message, NOW) == handle_wallet(wallet, message, NOW)


def test_json_stores_money_as_strings() -> None:
    raw = wallet_with("12.30").to_json()
    assert b'"balance":"12.30"' in raw


def test_view() -> None:
    wallet, _ = apply(wallet_with("50.00"), charge("o-1", "19.99"))
    assert wallet.view() == {"customer_id": CUSTOMER, "balance": "30.01"}


def test_random_sequences_never_go_below_zero_and_keep_the_books() -> None:
    """balance == funded - charged + refunded; each order charged at most once and refunded at most its charge."""
    rng = random.Random(1234)
    for _ in range(200):
        wallet = Wallet(customer_id=CUSTOMER)
        fundings: dict[str, Decimal] = {}
        for _ in range(60):
            roll = rng.random()
            order = f"o-{rng.randint(1, 6)}"
            amount = f"{rng.randint(0, 4000) / 100:.2f}"
            message: object
            if roll < 0.25:
                event_id = f"fund-{rng.randint(1, 8)}"
                fundings.setdefault(event_id, Decimal(amount) or Decimal("0.01"))
                message = funds(str(fundings[event_id]), event_id)
            elif roll < 0.75:
                message = charge(order, amount)
            else:
                message = refund(order, amount)
            before = wallet
            wallet, out = handle_wallet(wallet, message, NOW)  # type: ignore[arg-type]
            assert wallet.balance >= 0
            if isinstance(message, ChargeWallet) and message.order_id in before.charges:
                assert wallet == before, "a second charge changes nothing"
            assert set(wallet.charges).isdisjoint(wallet.declines)
            for order_id, amount_back in wallet.refunds.items():
                assert amount_back == wallet.charges.get(order_id, Decimal("0.00"))
            replies = (PaymentProcessed, PaymentCharged, PaymentFailed, PaymentDeclined, PaymentRefunded)
            assert all(isinstance(reply, replies) for reply in out)
        funded = sum((fundings[e] for e in wallet.funded), Decimal("0.00"))
        charged = sum(wallet.charges.values(), Decimal("0.00"))
        refunded_total = sum(wallet.refunds.values(), Decimal("0.00"))
        assert wallet.balance == funded - charged + refunded_total
