"""Write a message the app cannot process to ``<topic>.DLQ``, byte for byte, with why."""

from __future__ import annotations

import logging

from faust.types import EventT

from app.topics import dead_letters
from models.events import format_time, utc_now

log = logging.getLogger(__name__)


async def dead_letter(event: EventT, reason: str, failure_class: str) -> None:
    """Send the original key and value to the dead-letter topic with the contract's headers."""
    message = event.message
    headers = [
        ("original.topic", message.topic.encode()),
        ("original.partition", str(message.partition).encode()),
        ("original.offset", str(message.offset).encode()),
        ("failure.reason", reason.encode("utf-8", "replace")),
        ("failure.timestamp", format_time(utc_now()).encode()),
        ("failure.class", failure_class.encode()),
    ]
    log.warning(
        "dead letter from %s[%s]@%s: %s: %s",
        message.topic, message.partition, message.offset, failure_class, reason,
    )
    await dead_letters[message.topic].send(key=message.key, value=message.value, headers=headers)
