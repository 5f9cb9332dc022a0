"""The wallet agent: the only writer of a customer's wallet, fed by FundsAdded and charges."""

from __future__ import annotations

from faust.types import StreamT

from agents.owner_loop import own_keys
from app.faust_app import app
from app.topics import internal
from models import commands
from models.commands import Message
from models.events import utc_now
from models.handlers import Handled, wallet_step
from tables.state import wallets


def _step(customer_id: str, stored: bytes | None, message: Message) -> Handled:
    """The wallet handler at the current time."""
    return wallet_step(customer_id, stored, message, utc_now())


@app.agent(internal[commands.WALLET], name="wallet")
async def wallet_agent(stream: StreamT) -> None:
    """Keep each wallet on the worker that owns the customer id."""
    await own_keys(stream, wallets, _step)
