"""The stock agent: the only writer of a sku's stock, fed by StockAdded and saga commands."""

from __future__ import annotations

from faust.types import AppT, StreamT

from agents.executor import Executor
from agents.faust_io import consume
from app.topics import Topics
from models import commands, handlers


def register(app: AppT, topics: Topics, executor: Executor, exactly_once: bool) -> None:
    """The stock agent on the internal stock topic."""

    @app.agent(topics.internal[commands.STOCK], name="stock")
    async def stock_agent(stream: StreamT) -> None:
        """Keep each sku's stock on the worker that owns the sku."""
        await consume(stream, executor, handlers.stock(exactly_once), enveloped=True)
