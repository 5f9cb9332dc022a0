"""The customer agent: the only writer of customer records, fed by UserRegistered."""

from __future__ import annotations

from faust.types import AppT, StreamT

from agents.executor import Executor
from agents.faust_io import consume
from app.topics import Topics
from models import commands, handlers


def register(app: AppT, topics: Topics, executor: Executor) -> None:
    """The customer agent on the internal customer topic."""

    @app.agent(topics.internal[commands.CUSTOMER], name="customers")
    async def customer_agent(stream: StreamT) -> None:
        """Keep customer records on the worker that owns the customer id."""
        await consume(stream, executor, handlers.customers, enveloped=True)
