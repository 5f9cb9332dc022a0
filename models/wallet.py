"""A customer's wallet: never below zero, each order charged at most once, refunds once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from models.commands import ChargeWallet, Message, PaymentCharged, PaymentDeclined, RefundWallet
from models.events import FundsAdded, PaymentFailed, PaymentProcessed, PaymentRefunded, derived_event_id, format_time
from models.evolve import evolve
from models.memory import remember, remember_id
from models.money import ZERO, format_money, parse_money

INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
ORDER_CANCELLED = "ORDER_CANCELLED"
#: the dicts of what each order came to, kept in pages of the wallet's memory (``models.paged``)
MEMORY = ("charges", "refunds", "declines")


@dataclass(frozen=True)
class Wallet:
    """Balance, and every charge, refund and decline by order id, and funding by event id."""

    customer_id: str
    balance: Decimal = ZERO
    charges: dict[str, Decimal] = field(default_factory=dict)
    refunds: dict[str, Decimal] = field(default_factory=dict)
    declines: dict[str, str] = field(default_factory=dict)
    funded: tuple[str, ...] = ()
    #: position of the input that last changed this wallet (``Incoming.position``): a duplicate at or
    #: before it is a redelivery
    last_input: int = -1

    def to_json(self) -> bytes:
        """The table value."""
        return orjson.dumps(
            {
                "customer_id": self.customer_id,
                "balance": format_money(self.balance),
                "charges": {k: format_money(v) for k, v in self.charges.items()},
                "refunds": {k: format_money(v) for k, v in self.refunds.items()},
                "declines": self.declines,
                "funded": list(self.funded),
                "last_input": self.last_input,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Wallet:
        """Read a table value written by :meth:`to_json`."""
        body: dict[str, Any] = orjson.loads(raw)
        return cls(
            customer_id=body["customer_id"],
            balance=parse_money(body["balance"]),
            charges={k: parse_money(v) for k, v in body["charges"].items()},
            refunds={k: parse_money(v) for k, v in body["refunds"].items()},
            declines=body["declines"],
            funded=tuple(body["funded"]),
            last_input=body.get("last_input", -1),
        )

    def view(self) -> dict[str, Any]:
        """What ``GET /wallets/{customer_id}`` shows."""
        return {"customer_id": self.customer_id, "balance": format_money(self.balance)}


def handle_wallet(wallet: Wallet, message: Message, now: datetime) -> tuple[Wallet, list[Message]]:
    """Apply one message for this customer; a repeated one changes nothing and answers again."""
    if isinstance(message, FundsAdded):
        if message.event_id in wallet.funded:
            return wallet, []
        return evolve(
            wallet, balance=wallet.balance + message.amount, funded=remember_id(wallet.funded, message.event_id)
        ), []
    if isinstance(message, ChargeWallet):
        return _charge(wallet, message, now)
    if isinstance(message, RefundWallet):
        return _refund(wallet, message, now)
    raise TypeError(f"wallet does not handle {type(message).__name__}")


def _charge(wallet: Wallet, command: ChargeWallet, now: datetime) -> tuple[Wallet, list[Message]]:
    """Take the amount if the balance covers it; an order seen before gets its first answer."""
    order_id = command.order_id
    if order_id in wallet.charges:
        return wallet, _charged(command, now)
    if order_id not in wallet.declines:
        if order_id in wallet.refunds:
            reason = ORDER_CANCELLED
        elif command.amount <= wallet.balance:
            charges = remember(wallet.charges, order_id, command.amount)
            charged = evolve(wallet, balance=wallet.balance - command.amount, charges=charges)
            return charged, _charged(command, now)
        else:
            reason = INSUFFICIENT_FUNDS
        wallet = evolve(wallet, declines=remember(wallet.declines, order_id, reason))
    return wallet, _declined(command, wallet.declines[order_id], now)


def _refund(wallet: Wallet, command: RefundWallet, now: datetime) -> tuple[Wallet, list[Message]]:
    """Give back what the order was charged, once; a refund before any charge bars the charge."""
    order_id = command.order_id
    if order_id not in wallet.refunds:
        amount = wallet.charges.get(order_id, ZERO)
        wallet = evolve(
            wallet, balance=wallet.balance + amount, refunds=remember(wallet.refunds, order_id, amount)
        )
    amount = wallet.refunds[order_id]
    if amount == ZERO:
        return wallet, []
    refunded = PaymentRefunded(
        event_id=derived_event_id(order_id, "PaymentRefunded"),
        occurred_at=format_time(now),
        order_id=order_id,
        customer_id=wallet.customer_id,
        amount=amount,
    )
    return wallet, [refunded]


def _charged(command: ChargeWallet, now: datetime) -> list[Message]:
    """The public event and the saga's reply for a charge."""
    return [
        PaymentProcessed(
            event_id=derived_event_id(command.order_id, "PaymentProcessed"),
            occurred_at=format_time(now),
            order_id=command.order_id,
            customer_id=command.customer_id,
            amount=command.amount,
        ),
        PaymentCharged(order_id=command.order_id, amount=command.amount),
    ]


def _declined(command: ChargeWallet, reason: str, now: datetime) -> list[Message]:
    """The public event and the saga's reply for a decline."""
    return [
        PaymentFailed(
            event_id=derived_event_id(command.order_id, "PaymentFailed"),
            occurred_at=format_time(now),
            order_id=command.order_id,
            customer_id=command.customer_id,
            amount=command.amount,
            reason=reason,
        ),
        PaymentDeclined(order_id=command.order_id, reason=reason),
    ]
