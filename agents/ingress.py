"""Read the public topics: validate, dead-letter what is bad, forward the rest to its owner.

Forwarding through an internal topic keyed by our own partitioner puts every key on the
partition that owns its state, whatever partitioner the outside producer used.
"""

from __future__ import annotations

from faust.types import EventT, StreamT

from agents.dead_letters import dead_letter
from agents.outputs import send_all
from app.faust_app import app, settings
from app.topic_names import INPUT_TOPICS, INVENTORY_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS, USER_EVENTS
from app.topics import internal, public
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
    decode_event,
)

OWN_OUTPUTS = {
    ORDER_EVENTS: {"OrderConfirmed", "OrderCancelled"},
    INVENTORY_EVENTS: {"InventoryReserved", "InventoryReservationFailed", "InventoryReleased"},
    PAYMENT_EVENTS: {"PaymentRequested", "PaymentRefunded"}
    | ({"PaymentProcessed", "PaymentFailed"} if settings.payment_mode == "internal" else set()),
    USER_EVENTS: {"CustomerNotified"},
}


def route(topic: str, event: Event) -> Message | None:
    """What to forward for an event read from a public topic; None for the app's own output."""
    if event.event_type in OWN_OUTPUTS[topic]:
        return None
    if topic == ORDER_EVENTS and isinstance(event, OrderPlaced):
        return event
    if topic == INVENTORY_EVENTS and isinstance(event, StockAdded):
        return event
    if topic == USER_EVENTS and isinstance(event, UserRegistered):
        return event
    if topic == PAYMENT_EVENTS:
        if isinstance(event, FundsAdded):
            return event
        if isinstance(event, PaymentProcessed):
            return PaymentCharged(order_id=event.order_id, amount=event.amount)
        if isinstance(event, PaymentFailed):
            return PaymentDeclined(order_id=event.order_id, reason=event.reason)
    raise BadMessage(f"{event.event_type} is not accepted on {topic}")


DESTINATION = {
    OrderPlaced: commands.SAGA,
    StockAdded: commands.STOCK,
    FundsAdded: commands.WALLET,
    UserRegistered: commands.CUSTOMER,
}


async def ingest(topic: str, event: EventT) -> None:
    """Validate one public message and forward it, or dead-letter it."""
    try:
        parsed = decode_event(event.message.value)
        forward = route(topic, parsed)
    except BadMessage as exc:
        await dead_letter(event, exc.reason, type(exc).__name__)
        return
    if isinstance(forward, Event):
        await internal[DESTINATION[type(forward)]].send(
            key=forward.aggregate_id.encode(), value=forward.encode(), headers=forward.headers()
        )
    elif forward is not None:
        await send_all([forward])


def _ingress_agent(topic: str) -> None:
    """Register one ingress agent for a public topic."""

    async def ingress(stream: StreamT) -> None:
        async for event in stream.events():
            await ingest(topic, event)

    ingress.__name__ = ingress.__qualname__ = f"{topic.replace('-', '_')}_ingress"
    app.agent(public[topic], name=f"ingress.{topic}")(ingress)


for _topic in INPUT_TOPICS:
    _ingress_agent(_topic)
