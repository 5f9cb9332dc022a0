"""The customer agent: the only writer of customer records, fed by UserRegistered."""

from __future__ import annotations

from faust.types import StreamT

from agents.owner_loop import own_keys
from app.faust_app import app
from app.topics import internal
from models import commands
from models.handlers import customer_step
from tables.state import customers


@app.agent(internal[commands.CUSTOMER], name="customers")
async def customer_agent(stream: StreamT) -> None:
    """Keep customer records on the worker that owns the customer id."""
    await own_keys(stream, customers, customer_step)
