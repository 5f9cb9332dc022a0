"""The wallet agent: the only writer of a customer's wallet, fed by FundsAdded and charges."""

from __future__ import annotations

from faust.types import StreamT

from agents.owner_loop import own_keys
from app.faust_app import app
from app.topics import internal
from models import commands
from models.commands import Message
from models.events import utc_now
from models.wallet import Wallet, handle_wallet
from tables.state import wallets


def wallet_step(customer_id: str, stored: bytes | None, message: Message) -> tuple[bytes | None, list[Message]]:
    """Load the wallet, apply the message, hand back what changed."""
    current = Wallet.from_json(stored) if stored is not None else Wallet(customer_id=customer_id)
    new, outputs = handle_wallet(current, message, utc_now())
    return (new.to_json() if new is not current else None), outputs


@app.agent(internal[commands.WALLET], name="wallet")
async def wallet_agent(stream: StreamT) -> None:
    """Keep each wallet on the worker that owns the customer id."""
    await own_keys(stream, wallets, wallet_step)
