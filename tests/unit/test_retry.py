"""Backoff delays and the retry loop, with the sleeps recorded instead of waited."""

from __future__ import annotations

import asyncio

import pytest

from agents import retry
from agents.retry import Backoff, retried
from config.settings import Settings
from models.events import BadMessage


def test_contract_defaults_give_one_then_two_seconds() -> None:
    assert Backoff.from_settings(Settings()).delays() == [1.0, 2.0]


def test_delays_grow_by_the_multiplier_and_stop_at_the_maximum() -> None:
    assert Backoff(attempts=6, initial=1.0, multiplier=3.0, maximum=10.0).delays() == [1.0, 3.0, 9.0, 10.0, 10.0]
    assert Backoff(attempts=1).delays() == []


class Flaky:
    """Fails ``failures`` times, then answers."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the backoff sleeps instead of waiting them out."""
    pauses: list[float] = []

    async def fake_sleep(delay: float) -> None:
        pauses.append(delay)

    monkeypatch.setattr(retry.asyncio, "sleep", fake_sleep)
    return pauses


def test_a_passing_failure_is_retried_with_backoff(slept: list[float]) -> None:
    work = Flaky(2, OSError("disk busy"))
    assert asyncio.run(retried(work, Backoff(), "test")) == "done"
    assert (work.calls, slept) == (3, [1.0, 2.0])


def test_what_still_fails_after_the_last_attempt_is_raised(slept: list[float]) -> None:
    work = Flaky(5, OSError("disk gone"))
    with pytest.raises(OSError, match="disk gone"):
        asyncio.run(retried(work, Backoff(attempts=3), "test"))
    assert (work.calls, slept) == (3, [1.0, 2.0])


def test_bad_input_is_never_retried(slept: list[float]) -> None:
    work = Flaky(1, BadMessage("not JSON"))
    with pytest.raises(BadMessage):
        asyncio.run(retried(work, Backoff(), "test"))
    assert (work.calls, slept) == (1, [])
