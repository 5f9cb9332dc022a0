"""``make run``'s program end to end: broker, worker, demo data, orders confirmed and cancelled, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.devstack import SEEDED_VIEWS
from devtools.kafka_local import free_port

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def _wait_for_text(path: Path, run: subprocess.Popen[bytes], done: Callable[[str], bool], timeout: float) -> str:
    """The program's output once ``done`` holds for it; fails if the program exits first."""
    deadline = time.monotonic() + timeout
    text = path.read_text()
    while time.monotonic() < deadline and not done(text):
        time.sleep(0.5)
        text = path.read_text()
        assert run.poll() is None, text[-3000:]
    assert done(text), text[-3000:]
    return text


def test_demo_runs_orders_survives_a_killed_worker_and_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    kafka_port, web_port = free_port(), free_port()
    env = {**os.environ, "STREAMSAGA_BROKER": f"kafka://127.0.0.1:{kafka_port}", "STREAMSAGA_WEB_PORT": str(web_port),
           "STREAMSAGA_DATA_DIR": str(tmp_path / "run"), "STREAMSAGA_DEMO_ORDER_INTERVAL_S": "0.2",
           "STREAMSAGA_APP_ID": "demo-e2e"}
    out = (tmp_path / "run.out").open("w+")
    run = subprocess.Popen([sys.executable, "-m", "devtools.devstack"], env=env, stdout=out, stderr=subprocess.STDOUT,
                           cwd=Path(__file__).resolve().parents[2])
    try:
        output = tmp_path / "run.out"
        _wait_for_text(output, run, lambda text: "streamsaga is running" in text, 180)
        for path in SEEDED_VIEWS:  # a user's first curls, as soon as the banner shows them
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}{path}", timeout=5) as response:
                assert response.status == 200, path
        text = _wait_for_text(output, run, lambda text: "confirmed" in text and "cancelled" in text, 180)
        assert "streamsaga is running" in text and f"127.0.0.1:{web_port}" in text
        assert re.search(r"confirmed demo-\w+: charged \d+\.\d\d", text), text[-2000:]
        assert re.search(r"cancelled demo-\w+: (OUT_OF_STOCK|PAYMENT_DECLINED)", text), text[-2000:]
        broker_pid = int((tmp_path / "run" / "kafka" / "broker.pid").read_text())
        first_pid = int((tmp_path / "run" / "worker.pid").read_text())
        assert _alive(broker_pid) and _alive(first_pid)

        os.kill(first_pid, signal.SIGKILL)  # as a user would: kill -9 $(cat .run/worker.pid)
        text = _wait_for_text(output, run, lambda text: "the worker is back" in text, 180)
        assert f"the worker (pid {first_pid}) was killed by SIGKILL" in text
        worker_pid = int((tmp_path / "run" / "worker.pid").read_text())
        assert worker_pid != first_pid and _alive(worker_pid) and not _alive(first_pid)
        after = len(text)
        _wait_for_text(output, run, lambda text: "confirmed demo-" in text[after:], 120)  # orders go on
    finally:
        run.send_signal(signal.SIGINT)
        stopping = time.monotonic()
        assert run.wait(90) == 0
        print(f"make run stopped {time.monotonic() - stopping:.1f}s after Ctrl-C")
    text = (tmp_path / "run.out").read_text()
    assert "stopped" in text
    assert not _alive(broker_pid) and not _alive(worker_pid)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left running: {leftovers}"
