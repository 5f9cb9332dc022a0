"""What each agent does with one message, on serialized state: the code the agents and the simulator share.

Each handler takes the stored table value (or None) and returns the value to store (None when
nothing changed) and the messages to send. No Faust, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import orjson

from models import commands
from models.commands import Message, PaymentCharged, PaymentDeclined
from models.events import (
    BadMessage,
    Event,
    FundsAdded,
    OrderPlaced,
    PaymentFailed,
    PaymentProcessed,
    StockAdded,
    UserRegistered,
    parse_time,
)
from models.saga import SagaPolicy, SagaState, transition
from models.stock import Stock, handle_stock
from models.topics import INVENTORY_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS, USER_EVENTS
from models.wallet import Wallet, handle_wallet

Handled = tuple[bytes | None, list[Message]]

_OWN_OUTPUTS = {
    ORDER_EVENTS: {"OrderConfirmed", "OrderCancelled"},
    INVENTORY_EVENTS: {"InventoryReserved", "InventoryReservationFailed", "InventoryReleased"},
    PAYMENT_EVENTS: {"PaymentRequested", "PaymentRefunded"},
    USER_EVENTS: {"CustomerNotified"},
}
_ACCEPTED: dict[str, dict[type[Event], str]] = {
    ORDER_EVENTS: {OrderPlaced: commands.SAGA},
    INVENTORY_EVENTS: {StockAdded: commands.STOCK},
    PAYMENT_EVENTS: {FundsAdded: commands.WALLET},
    USER_EVENTS: {UserRegistered: commands.CUSTOMER},
}


def route_public(topic: str, event: Event, payment_mode: str) -> tuple[str, Message] | None:
    """Where an event read from a public topic goes (internal topic, message); None for our own output."""
    own = _OWN_OUTPUTS[topic] | ({"PaymentProcessed", "PaymentFailed"} if payment_mode == "internal" else set())
    if event.event_type in own:
        return None
    destination = _ACCEPTED[topic].get(type(event))
    if destination is not None:
        return destination, event
    if topic == PAYMENT_EVENTS and isinstance(event, PaymentProcessed):
        return commands.SAGA, PaymentCharged(order_id=event.order_id, amount=event.amount)
    if topic == PAYMENT_EVENTS and isinstance(event, PaymentFailed):
        return commands.SAGA, PaymentDeclined(order_id=event.order_id, reason=event.reason)
    raise BadMessage(f"{event.event_type} is not accepted on {topic}")


def saga_step(
    stored: bytes | None, message: Message, now: datetime, policy: SagaPolicy
) -> tuple[bytes | None, list[Message], SagaState | None]:
    """Run the pure transition on the stored saga; also hand back the saga as it now is."""
    state = SagaState.from_json(stored) if stored is not None else None
    new_state, outputs = transition(state, message, now, policy)
    changed = new_state is not None and new_state is not state
    return (new_state.to_json() if changed and new_state is not None else None), outputs, new_state


def deadline_entry(state: SagaState) -> bytes | None:
    """What the deadline index holds for a saga: its deadline while in progress, nothing once it ended."""
    return None if state.is_terminal else state.deadline.encode()


def overdue(index: Iterable[tuple[bytes, bytes | None]], now: datetime) -> list[str]:
    """Order ids in a deadline index whose deadline has passed."""
    return [key.decode() for key, deadline in index if deadline is not None and parse_time(deadline.decode()) <= now]


def stock_step(sku: str, stored: bytes | None, message: Message) -> Handled:
    """Apply a message to the stored stock of a sku."""
    current = Stock.from_json(stored) if stored is not None else Stock(sku=sku)
    new, outputs = handle_stock(current, message)
    return (new.to_json() if new is not current else None), outputs


def wallet_step(customer_id: str, stored: bytes | None, message: Message, now: datetime) -> Handled:
    """Apply a message to the stored wallet of a customer."""
    current = Wallet.from_json(stored) if stored is not None else Wallet(customer_id=customer_id)
    new, outputs = handle_wallet(current, message, now)
    return (new.to_json() if new is not current else None), outputs


def customer_step(customer_id: str, stored: bytes | None, message: Message) -> Handled:
    """Keep the latest registration of a customer; a repeat changes nothing."""
    if not isinstance(message, UserRegistered):
        raise TypeError(f"customers do not handle {type(message).__name__}")
    record = orjson.dumps({"customer_id": customer_id, "name": message.name, "email": message.email})
    return (None if record == stored else record), []
