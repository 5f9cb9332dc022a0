"""Internal messages between the agents: commands to stock and wallets, replies to the saga."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import orjson

from models.events import BadMessage, Event, build_record, event_from_body, field_names, to_json

STOCK = "stock-commands"
WALLET = "wallet-commands"
SAGA = "saga-replies"
CUSTOMER = "customer-commands"


@dataclass(frozen=True)
class Command:
    """A message on an internal topic, keyed so it reaches the one writer of that key."""

    destination: ClassVar[str]
    key_field: ClassVar[str] = "order_id"

    @property
    def key(self) -> str:
        """The internal topic's key."""
        return str(getattr(self, self.key_field))

    @property
    def output_id(self) -> str:
        """Identity of this command, so the saga can tell a new output from one already sent."""
        values = "/".join(str(getattr(self, name)) for name in field_names(type(self)))
        return f"{type(self).__name__}/{values}"

    def encode(self) -> bytes:
        """The internal topic's value."""
        body = {"kind": type(self).__name__}
        body.update({name: to_json(getattr(self, name)) for name in field_names(type(self))})
        return orjson.dumps(body)


@dataclass(frozen=True)
class ReserveStock(Command):
    """Hold ``quantity`` of a sku for an order, or refuse."""

    order_id: str
    sku: str
    quantity: int
    destination: ClassVar[str] = STOCK
    key_field: ClassVar[str] = "sku"


@dataclass(frozen=True)
class ReleaseStock(Command):
    """Give an order's hold on a sku back to stock."""

    order_id: str
    sku: str
    destination: ClassVar[str] = STOCK
    key_field: ClassVar[str] = "sku"


@dataclass(frozen=True)
class CommitStock(Command):
    """Turn an order's hold on a sku into a sale."""

    order_id: str
    sku: str
    destination: ClassVar[str] = STOCK
    key_field: ClassVar[str] = "sku"


@dataclass(frozen=True)
class ChargeWallet(Command):
    """Take an order's amount from the customer's wallet, or decline."""

    order_id: str
    customer_id: str
    amount: Decimal
    destination: ClassVar[str] = WALLET
    key_field: ClassVar[str] = "customer_id"


@dataclass(frozen=True)
class RefundWallet(Command):
    """Give an order's charge back to the customer's wallet."""

    order_id: str
    customer_id: str
    amount: Decimal
    destination: ClassVar[str] = WALLET
    key_field: ClassVar[str] = "customer_id"


@dataclass(frozen=True)
class StockReserved(Command):
    """Reply: the line is held for the order."""

    order_id: str
    sku: str
    quantity: int
    destination: ClassVar[str] = SAGA


@dataclass(frozen=True)
class StockRefused(Command):
    """Reply: the line could not be held."""

    order_id: str
    sku: str
    requested: int
    available: int
    destination: ClassVar[str] = SAGA


@dataclass(frozen=True)
class PaymentCharged(Command):
    """Reply: the customer paid for the order."""

    order_id: str
    amount: Decimal
    destination: ClassVar[str] = SAGA


@dataclass(frozen=True)
class PaymentDeclined(Command):
    """Reply: the customer could not pay for the order."""

    order_id: str
    reason: str
    destination: ClassVar[str] = SAGA


@dataclass(frozen=True)
class SagaTimeout(Command):
    """A saga's deadline passed; sent by the timer of the worker that owns it."""

    order_id: str
    destination: ClassVar[str] = SAGA


@dataclass(frozen=True)
class ForgetSaga(Command):
    """A finished saga's retention passed; sent by the timer of the worker that owns it, with the index key."""

    order_id: str
    entry: str
    destination: ClassVar[str] = SAGA


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.__name__: cls
    for cls in (
        ReserveStock, ReleaseStock, CommitStock, ChargeWallet, RefundWallet,
        StockReserved, StockRefused, PaymentCharged, PaymentDeclined, SagaTimeout, ForgetSaga,
    )
}

Message = Command | Event


def decode_message(value: bytes) -> Message:
    """Read an internal topic's value: a command (``kind``) or a forwarded event."""
    try:
        body: Any = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"value is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadMessage("value is not a JSON object")
    kind = body.get("kind")
    if kind is None:
        return event_from_body(body)
    cls = COMMAND_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise BadMessage(f"unknown command kind {kind!r}")
    try:
        command: Command = build_record(cls, body)
    except (ValueError, TypeError) as exc:
        raise BadMessage(f"invalid {kind}: {exc}") from None
    return command
