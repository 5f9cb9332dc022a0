"""The contract's public topics and which events live on each; plain names, no prefixes."""

from __future__ import annotations

ORDER_EVENTS = "order-events"
INVENTORY_EVENTS = "inventory-events"
PAYMENT_EVENTS = "payment-events"
USER_EVENTS = "user-events"
SAGA_EVENTS = "saga-events"
PUBLIC_TOPICS = (ORDER_EVENTS, INVENTORY_EVENTS, PAYMENT_EVENTS, USER_EVENTS, SAGA_EVENTS)
INPUT_TOPICS = (ORDER_EVENTS, INVENTORY_EVENTS, PAYMENT_EVENTS, USER_EVENTS)

EVENT_TOPIC = {
    "OrderPlaced": ORDER_EVENTS,
    "OrderConfirmed": ORDER_EVENTS,
    "OrderCancelled": ORDER_EVENTS,
    "StockAdded": INVENTORY_EVENTS,
    "InventoryReserved": INVENTORY_EVENTS,
    "InventoryReservationFailed": INVENTORY_EVENTS,
    "InventoryReleased": INVENTORY_EVENTS,
    "FundsAdded": PAYMENT_EVENTS,
    "PaymentRequested": PAYMENT_EVENTS,
    "PaymentProcessed": PAYMENT_EVENTS,
    "PaymentFailed": PAYMENT_EVENTS,
    "PaymentRefunded": PAYMENT_EVENTS,
    "UserRegistered": USER_EVENTS,
    "CustomerNotified": USER_EVENTS,
}


def topic_of(event_type: str) -> str:
    """The public topic an event type lives on; saga events elsewhere."""
    return EVENT_TOPIC.get(event_type, SAGA_EVENTS)


def dead_letter_name(topic: str) -> str:
    """The contract's dead-letter topic of a topic (its full name)."""
    return f"{topic}.DLQ"
