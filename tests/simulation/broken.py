"""Deliberately broken handlers, each a bug the simulator must catch.

Each wraps the real handler of ``models.handlers`` and breaks one rule of the design; the tests
in test_broken_handlers.py assert that the simulator finds each within a bounded number of seeds.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from models import handlers
from models.commands import (
    ChargeWallet,
    Message,
    PaymentCharged,
    RefundWallet,
    ReserveStock,
    SagaTimeout,
    StockReserved,
)
from models.events import PaymentRefunded
from models.saga import SagaPolicy, SagaState
from models.stock import Stock
from models.wallet import Wallet
from simulation.simulator import REAL, Handlers


def saga_drops_outputs_on_duplicate(
    stored: bytes | None, message: Message, now: datetime, policy: SagaPolicy
) -> tuple[bytes | None, list[Message], SagaState | None]:
    """A message that changes nothing sends nothing: a crash between the write and the sends loses them."""
    new, outputs, state = handlers.saga_step(stored, message, now, policy)
    return new, (outputs if new is not None else []), state


def stock_drops_outputs_on_duplicate(sku: str, stored: bytes | None, message: Message) -> handlers.Handled:
    new, outputs = handlers.stock_step(sku, stored, message)
    return new, (outputs if new is not None else [])


def wallet_drops_outputs_on_duplicate(
    customer_id: str, stored: bytes | None, message: Message, now: datetime
) -> handlers.Handled:
    new, outputs = handlers.wallet_step(customer_id, stored, message, now)
    return new, (outputs if new is not None else [])


def saga_keeps_late_payments(
    stored: bytes | None, message: Message, now: datetime, policy: SagaPolicy
) -> tuple[bytes | None, list[Message], SagaState | None]:
    """A payment that comes after the saga ended is recorded but never refunded."""
    new, outputs, state = handlers.saga_step(stored, message, now, policy)
    return new, [out for out in outputs if not isinstance(out, (RefundWallet, PaymentRefunded))], state


def stock_reserves_duplicates_again(sku: str, stored: bytes | None, message: Message) -> handlers.Handled:
    """A repeated ReserveStock holds the quantity a second time."""
    if isinstance(message, ReserveStock) and stored is not None:
        stock = Stock.from_json(stored)
        held = stock.holds.get(message.order_id)
        if held is not None and message.quantity <= stock.available:
            again = dataclasses.replace(
                stock,
                available=stock.available - message.quantity,
                holds={**stock.holds, message.order_id: held + message.quantity},
            )
            return again.to_json(), [StockReserved(order_id=message.order_id, sku=sku, quantity=message.quantity)]
    return handlers.stock_step(sku, stored, message)


def wallet_charges_duplicates_again(
    customer_id: str, stored: bytes | None, message: Message, now: datetime
) -> handlers.Handled:
    """A repeated ChargeWallet takes the money a second time."""
    if isinstance(message, ChargeWallet) and stored is not None:
        wallet = Wallet.from_json(stored)
        charged = wallet.charges.get(message.order_id)
        if charged is not None and message.amount <= wallet.balance:
            again = dataclasses.replace(
                wallet,
                balance=wallet.balance - message.amount,
                charges={**wallet.charges, message.order_id: charged + message.amount},
            )
            return again.to_json(), [PaymentCharged(order_id=message.order_id, amount=message.amount)]
    return handlers.wallet_step(customer_id, stored, message, now)


def saga_ignores_timeouts(
    stored: bytes | None, message: Message, now: datetime, policy: SagaPolicy
) -> tuple[bytes | None, list[Message], SagaState | None]:
    """The timer's SagaTimeout is dropped: a saga with no answer waits forever."""
    if isinstance(message, SagaTimeout):
        return None, [], SagaState.from_json(stored) if stored is not None else None
    return handlers.saga_step(stored, message, now, policy)


BROKEN: dict[str, Handlers] = {
    "drop-outputs-on-duplicate": dataclasses.replace(
        REAL,
        saga_step=saga_drops_outputs_on_duplicate,
        stock_step=stock_drops_outputs_on_duplicate,
        wallet_step=wallet_drops_outputs_on_duplicate,
    ),
    "saga-drops-outputs-on-duplicate": dataclasses.replace(REAL, saga_step=saga_drops_outputs_on_duplicate),
    "late-payment-not-refunded": dataclasses.replace(REAL, saga_step=saga_keeps_late_payments),
    "stock-reserves-duplicates-again": dataclasses.replace(REAL, stock_step=stock_reserves_duplicates_again),
    "wallet-charges-duplicates-again": dataclasses.replace(REAL, wallet_step=wallet_charges_duplicates_again),
    "saga-ignores-timeouts": dataclasses.replace(REAL, saga_step=saga_ignores_timeouts),
}
