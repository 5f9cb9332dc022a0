"""The stock agent: the only writer of a sku's stock, fed by StockAdded and saga commands."""

from __future__ import annotations

from faust.types import StreamT

from agents.owner_loop import own_keys
from app.faust_app import app
from app.topics import internal
from models import commands
from models.handlers import stock_step
from tables.state import stock


@app.agent(internal[commands.STOCK], name="stock")
async def stock_agent(stream: StreamT) -> None:
    """Keep each sku's stock on the worker that owns the sku."""
    await own_keys(stream, stock, stock_step)
