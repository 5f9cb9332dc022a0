"""The commit gate: no transaction ends in the middle of a message, and a settled worker commits early."""

from __future__ import annotations

import asyncio
from typing import Any

from app.commit_gate import MIN_COMMIT_GAP_S, CommitGate, commit_due


def test_a_commit_waits_for_the_message_under_way_and_the_next_message_waits_for_the_commit() -> None:
    gate, order = CommitGate(), []

    async def message(name: str, steps: int) -> None:
        async with gate.message():
            order.append(f"{name} writes")
            for _ in range(steps):
                await asyncio.sleep(0)  # its sends, each an await
            order.append(f"{name} sends")

    async def commit() -> None:
        async with gate.commit():
            order.append("commit")
            await asyncio.sleep(0)

    async def scenario() -> None:
        first = asyncio.create_task(message("first", 3))
        await asyncio.sleep(0)  # the first message is half done
        committing = asyncio.create_task(commit())
        await asyncio.sleep(0)
        second = asyncio.create_task(message("second", 1))  # comes while the commit waits
        await asyncio.gather(first, committing, second)

    asyncio.run(scenario())
    assert order == ["first writes", "first sends", "commit", "second writes", "second sends"]


def test_messages_run_side_by_side_when_no_commit_is_waiting() -> None:
    gate, order = CommitGate(), []

    async def message(name: str) -> None:
        async with gate.message():
            order.append(f"{name} in")
            await asyncio.sleep(0)
            order.append(f"{name} out")

    async def scenario() -> None:
        await asyncio.gather(message("a"), message("b"))

    asyncio.run(scenario())
    assert order == ["a in", "b in", "a out", "b out"]


async def _handled(gate: CommitGate) -> None:
    async with gate.message():
        await asyncio.sleep(0)


async def _done_within(aw: Any, seconds: float) -> bool:
    try:
        await asyncio.wait_for(aw, seconds)
    except TimeoutError:
        return False
    return True


def test_a_gate_with_nothing_handled_since_the_last_commit_never_settles() -> None:
    async def scenario() -> tuple[bool, bool]:
        gate = CommitGate()
        before_any = await _done_within(gate.settled(0.001), 0.05)
        await _handled(gate)
        async with gate.commit():
            pass
        after_the_commit = await _done_within(gate.settled(0.001), 0.05)
        return before_any, after_the_commit

    assert asyncio.run(scenario()) == (False, False)


def test_a_gate_settles_once_messages_stop_coming_for_the_quiet_time() -> None:
    async def scenario() -> tuple[float, float]:
        gate = CommitGate()
        loop = asyncio.get_running_loop()
        start = loop.time()
        settled = asyncio.ensure_future(gate.settled(0.03))
        for _ in range(5):  # a message every 10 ms keeps it from settling
            await _handled(gate)
            await asyncio.sleep(0.01)
        last = loop.time()
        await asyncio.wait_for(settled, 2.0)
        return last - start, loop.time() - last

    busy_for, settled_after = asyncio.run(scenario())
    assert busy_for >= 0.05
    assert 0.015 <= settled_after < 0.2


def _waited_for_commit(interval: float, *, early: bool, handled: bool) -> float:
    """Seconds ``commit_due`` waited, with one message handled before it or none."""
    async def scenario() -> float:
        gate = CommitGate()
        if handled:
            await _handled(gate)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(commit_due(gate, interval, early=early), interval + 2.0)
        return loop.time() - start

    return asyncio.run(scenario())


def test_under_exactly_once_a_commit_is_due_once_the_worker_settles_not_at_the_interval() -> None:
    assert MIN_COMMIT_GAP_S * 0.9 <= _waited_for_commit(5.0, early=True, handled=True) < 1.0


def test_a_worker_with_nothing_handled_commits_at_the_interval() -> None:
    assert _waited_for_commit(0.1, early=True, handled=False) >= 0.09
    assert _waited_for_commit(0.1, early=False, handled=False) >= 0.09


def test_under_at_least_once_a_commit_waits_for_the_interval_even_when_settled() -> None:
    assert _waited_for_commit(0.2, early=False, handled=True) >= 0.19


def test_what_the_agents_hold_is_dropped_while_they_run_and_not_after() -> None:
    gate, held = CommitGate(), {"saga": 3, "wallet": 1}

    async def flush() -> None:
        return None

    def dropper(name: str) -> Any:
        def drop() -> int:
            dropped, held[name] = held[name], 0
            return dropped
        return drop

    with gate.flushing(flush, dropper("saga")), gate.flushing(flush, dropper("wallet")):
        assert gate.drop_held() == 4
        held["saga"] = 2
    assert gate.drop_held() == 0 and held == {"saga": 2, "wallet": 0}  # an agent that stopped is not asked
