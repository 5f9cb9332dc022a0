"""make run's supervisor, on real short-lived processes: restart what dies, give up on a crash loop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import pytest

from devtools.supervisor import GaveUp, Supervisor, describe_exit


def test_exits_are_described_in_words() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-9) == "was killed by SIGKILL"


def test_a_worker_that_fails_as_soon_as_it_starts_makes_the_supervisor_give_up() -> None:
    said: list[str] = []
    supervisor = Supervisor(start=lambda: subprocess.Popen(["false"]), say=said.append, max_fast_failures=3)
    supervisor.launch()
    with pytest.raises(GaveUp, match="failed 3 times in a row"):
        asyncio.run(asyncio.wait_for(supervisor.watch(asyncio.Event()), 30))
    assert supervisor.restarts == 2
    assert sum("exited with code 1" in line for line in said) == 3, said


def test_a_worker_that_does_not_even_start_counts_as_a_fast_failure() -> None:
    attempts: list[int] = []

    def start() -> subprocess.Popen[bytes]:
        attempts.append(1)
        if len(attempts) > 1:
            raise RuntimeError("the worker exited with 1; see worker.log")
        return subprocess.Popen(["false"])

    said: list[str] = []
    supervisor = Supervisor(start=start, say=said.append, max_fast_failures=2)
    supervisor.launch()
    with pytest.raises(GaveUp):
        asyncio.run(asyncio.wait_for(supervisor.watch(asyncio.Event()), 30))
    assert len(attempts) == 2 and any("did not start: the worker exited with 1" in line for line in said), said


def test_a_killed_worker_is_reported_and_started_again() -> None:
    processes: list[subprocess.Popen[bytes]] = []
    pids: list[int] = []

    def start() -> subprocess.Popen[bytes]:
        processes.append(subprocess.Popen(["sleep", "60"]))
        return processes[-1]

    said: list[str] = []
    supervisor = Supervisor(start=start, say=said.append, on_start=lambda process: pids.append(process.pid))

    async def kill_once() -> None:
        stop = asyncio.Event()
        watcher = asyncio.create_task(supervisor.watch(stop))
        os.kill(processes[0].pid, signal.SIGKILL)
        while supervisor.restarts < 1:
            await asyncio.sleep(0.05)
        stop.set()
        await watcher

    try:
        supervisor.launch()
        asyncio.run(asyncio.wait_for(kill_once(), 30))
        assert pids == [processes[0].pid, processes[1].pid]
        assert processes[1].poll() is None, "the new worker runs"
        assert any(f"(pid {pids[0]}) was killed by SIGKILL" in line for line in said), said
        assert supervisor.fast_failures == 1 and supervisor.up.is_set()
    finally:
        for process in processes:
            process.kill()
            process.wait()
