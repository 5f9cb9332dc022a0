"""The customer agent: the only writer of customer records, fed by UserRegistered."""

from __future__ import annotations

import orjson
from faust.types import StreamT

from agents.owner_loop import own_keys
from app.faust_app import app
from app.topics import internal
from models import commands
from models.commands import Message
from models.events import UserRegistered
from tables.state import customers


def customer_step(customer_id: str, stored: bytes | None, message: Message) -> tuple[bytes | None, list[Message]]:
    """Keep the latest registration of a customer; a repeat changes nothing."""
    if not isinstance(message, UserRegistered):
        raise TypeError(f"customers do not handle {type(message).__name__}")
    record = orjson.dumps({"customer_id": customer_id, "name": message.name, "email": message.email})
    return (None if record == stored else record), []


@app.agent(internal[commands.CUSTOMER], name="customers")
async def customer_agent(stream: StreamT) -> None:
    """Keep customer records on the worker that owns the customer id."""
    await own_keys(stream, customers, customer_step)
