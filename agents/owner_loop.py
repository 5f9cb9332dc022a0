"""The loop every state-owning agent runs: decode, load, call the domain, store, send."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from faust.types import StreamT

from agents.dead_letters import dead_letter
from agents.outputs import send_all
from agents.retry import Backoff, retried
from app.faust_app import settings
from models.commands import Message, decode_message
from models.events import BadMessage

log = logging.getLogger(__name__)

#: ``step(key, stored value or None, message) -> (value to store or None, outputs)``
Step = Callable[[str, bytes | None, Message], tuple[bytes | None, list[Message]]]
BACKOFF = Backoff.from_settings(settings)


async def own_keys(stream: StreamT, table: Any, step: Step) -> None:
    """Apply each message to the state of its key; the table write precedes the sends.

    A failed attempt is retried from the top: a write that landed makes the retry a
    duplicate, which re-sends the outputs instead of applying the change again.
    """
    async for event in stream.events():
        try:
            message = decode_message(event.message.value)
        except BadMessage as exc:
            await dead_letter(event, exc.reason, type(exc).__name__)
            continue
        key = event.message.key.decode()

        async def apply(message: Message = message, key: str = key) -> None:
            stored, outputs = step(key, table.get(key), message)
            if stored is not None:
                table[key] = stored
            await send_all(outputs)

        try:
            await retried(apply, BACKOFF, f"{type(message).__name__} for {key}")
        except Exception as exc:  # noqa: BLE001 - whatever still fails is recorded, never dropped
            log.exception("giving up on %s for %s", type(message).__name__, key)
            await dead_letter(event, str(exc) or repr(exc), type(exc).__name__)
