"""The stock agent: the only writer of a sku's stock, fed by StockAdded and saga commands."""

from __future__ import annotations

from faust.types import StreamT

from agents.owner_loop import own_keys
from app.faust_app import app
from app.topics import internal
from models import commands
from models.commands import Message
from models.stock import Stock, handle_stock
from tables.state import stock


def stock_step(sku: str, stored: bytes | None, message: Message) -> tuple[bytes | None, list[Message]]:
    """Load the sku's stock, apply the message, hand back what changed."""
    current = Stock.from_json(stored) if stored is not None else Stock(sku=sku)
    new, outputs = handle_stock(current, message)
    return (new.to_json() if new is not current else None), outputs


@app.agent(internal[commands.STOCK], name="stock")
async def stock_agent(stream: StreamT) -> None:
    """Keep each sku's stock on the worker that owns the sku."""
    await own_keys(stream, stock, stock_step)
