"""What a rebalance takes from a worker under exactly_once: its transaction, with every change and send of it."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from agents.faust_io import _fetched_before_a_rebalance
from app.composition import build
from config.settings import Settings


def test_the_abort_at_a_rebalance_drops_the_sends_the_agents_hold(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Sent after the abort, they joined the next generation's transaction without their table changes."""
    app = build(Settings(data_dir=tmp_path, processing_guarantee="exactly_once"))
    held = {"n": 3}

    async def flush() -> None:
        return None

    def drop() -> int:
        dropped, held["n"] = held["n"], 0
        return dropped

    with app.commit_gate.flushing(flush, drop), caplog.at_level(logging.WARNING):  # type: ignore[attr-defined]
        app.consumer.transactions._forget_uncommitted()  # type: ignore[attr-defined]
    assert held["n"] == 0
    assert "Dropped 3 held sends" in caplog.text


@pytest.mark.parametrize(("fetched_in", "now", "skipped"), [(2, 3, True), (3, 3, False), (None, 3, False)])
def test_a_record_fetched_before_a_rebalance_is_skipped_when_an_agent_gets_to_it_after(
        fetched_in: int | None, now: int, skipped: bool) -> None:
    """An agent waiting at the commit gate with a record while the rebalance's last commit ran went on with it."""
    app = SimpleNamespace(consumer_generation_id=now)
    message = SimpleNamespace(topic="saga-replies", partition=0, offset=19, generation_id=fetched_in)
    assert _fetched_before_a_rebalance(app, message) is skipped  # type: ignore[arg-type]
