"""``make run``'s program (``devtools.devstack``) driven from a test: its output and its processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: the repository, where ``make run`` runs its program
REPOSITORY = Path(__file__).resolve().parents[2]


def start_devstack(env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    """``make run``'s program with this environment, its output to ``output``."""
    with output.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "devtools.devstack"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=REPOSITORY)


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def wait_for_text(path: Path, run: subprocess.Popen[bytes], done: Callable[[str], bool], timeout: float) -> str:
    """The program's output once ``done`` holds for it; fails if the program exits first."""
    deadline = time.monotonic() + timeout
    text = path.read_text()
    while time.monotonic() < deadline and not done(text):
        time.sleep(0.5)
        text = path.read_text()
        assert run.poll() is None, text[-3000:]
    assert done(text), text[-3000:]
    return text
