"""The wallet agent: the only writer of a customer's wallet, fed by FundsAdded and charges."""

from __future__ import annotations

from faust.types import AppT, StreamT

from agents.executor import Executor
from agents.faust_io import consume
from app.topics import Topics
from models import commands, handlers


def register(app: AppT, topics: Topics, executor: Executor, exactly_once: bool) -> None:
    """The wallet agent on the internal wallet topic."""

    @app.agent(topics.internal[commands.WALLET], name="wallet")
    async def wallet_agent(stream: StreamT) -> None:
        """Keep each wallet on the worker that owns the customer id."""
        await consume(stream, executor, handlers.wallet(exactly_once), enveloped=True)
