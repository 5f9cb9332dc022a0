"""Keep ``make run``'s worker running: notice when it exits, say so, start it again, give up on a crash loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: a worker that exits sooner than this after it started counts as a fast failure
FAST_FAILURE_S = 30.0
#: this many fast failures in a row and the supervisor gives up
MAX_FAST_FAILURES = 3
POLL_S = 0.5


class GaveUp(RuntimeError):
    """The worker keeps failing as soon as it starts; restarting it again would not help."""


def describe_exit(code: int) -> str:
    """How a process ended, in words: an exit code, or the signal that killed it."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Supervisor:
    """Restarts the worker that ``start`` starts (and waits for) whenever it exits, until stopped."""

    start: Callable[[], subprocess.Popen[bytes]]
    say: Callable[[str], None]
    on_start: Callable[[subprocess.Popen[bytes]], object] = lambda process: None
    fast_failure_s: float = FAST_FAILURE_S
    max_fast_failures: int = MAX_FAST_FAILURES
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    fast_failures: int = 0
    restarts: int = 0
    #: set while a worker runs (as far as the watch loop knows); for the demo orders to wait on
    up: asyncio.Event = field(default_factory=asyncio.Event)

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the worker (blocking until it is ready) and record it."""
        self.process = self.start()
        self.started_at = time.monotonic()
        self.on_start(self.process)
        return self.process

    async def watch(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: restart the worker whenever it exits; raise :class:`GaveUp` on a crash loop."""
        if self.process is not None:
            self.up.set()
        while not stop.is_set():
            process = self.process
            if process is not None and process.poll() is not None:
                self.up.clear()
                lived = time.monotonic() - self.started_at
                self.say(f"the worker (pid {process.pid}) {describe_exit(process.returncode)} after {lived:.0f}s")
                self.fast_failures = self.fast_failures + 1 if lived < self.fast_failure_s else 0
                await self._relaunch()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)

    async def _relaunch(self) -> None:
        """Start the worker again, counting a start that fails as one more fast failure."""
        while True:
            if self.fast_failures >= self.max_fast_failures:
                raise GaveUp(f"the worker failed {self.fast_failures} times in a row within "
                             f"{self.fast_failure_s:.0f}s of starting; giving up")
            self.say("starting the worker again")
            try:
                process = await asyncio.to_thread(self.launch)
            except RuntimeError as exc:
                self.say(f"the worker did not start: {exc}")
                self.fast_failures += 1
                continue
            self.restarts += 1
            self.up.set()
            self.say(f"the worker is back (pid {process.pid})")
            return
