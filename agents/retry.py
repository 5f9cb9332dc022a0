"""Exponential backoff for work that may fail for a moment; the caller dead-letters what still fails."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from config.settings import Settings
from models.events import BadMessage

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Attempts and delays: ``initial``, then times ``multiplier``, never above ``maximum``."""

    attempts: int = 3
    initial: float = 1.0
    multiplier: float = 2.0
    maximum: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        """The contract's defaults, or what the settings say."""
        return cls(settings.retry_attempts, settings.retry_initial_s, settings.retry_multiplier, settings.retry_max_s)

    def delays(self) -> list[float]:
        """The pauses between attempts."""
        return [min(self.initial * self.multiplier**n, self.maximum) for n in range(self.attempts - 1)]


Sleep = Callable[[float], Awaitable[None]]


async def retried(work: Callable[[], Awaitable[T]], backoff: Backoff, what: str, sleep: Sleep | None = None) -> T:
    """Run ``work``; on an unexpected error wait and try again; bad input is never retried."""
    for delay in backoff.delays():
        try:
            return await work()
        except BadMessage:
            raise
        except Exception as exc:  # noqa: BLE001 - anything else may pass; the last attempt raises
            log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay)
            await (sleep or asyncio.sleep)(delay)
    return await work()
