"""The commit gate: no transaction ends in the middle of a message."""

from __future__ import annotations

import asyncio

from app.transactions import CommitGate


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
