"""``make run``'s program end to end: broker, worker, demo data, orders confirmed and cancelled, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from devtools.devstack import SEEDED_VIEWS
from devtools.kafka_local import free_port
from support.devstack import alive, start_devstack, wait_for_text

pytestmark = pytest.mark.e2e


def test_demo_runs_orders_survives_a_killed_worker_and_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    kafka_port, web_port = free_port(), free_port()
    env = {**os.environ, "STREAMSAGA_BROKER": f"kafka://127.0.0.1:{kafka_port}", "STREAMSAGA_WEB_PORT": str(web_port),
           "STREAMSAGA_DATA_DIR": str(tmp_path / "run"), "STREAMSAGA_DEMO_ORDER_INTERVAL_S": "0.2",
           "STREAMSAGA_APP_ID": "demo-e2e"}
    output = tmp_path / "run.out"
    run = start_devstack(env, output)
    try:
        wait_for_text(output, run, lambda text: "streamsaga is running" in text, 180)
        for path in SEEDED_VIEWS:  # a user's first curls, as soon as the banner shows them
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}{path}", timeout=5) as response:
                assert response.status == 200, path
        text = wait_for_text(output, run, lambda text: "confirmed" in text and "cancelled" in text, 180)
        assert "streamsaga is running" in text and f"127.0.0.1:{web_port}" in text
        assert re.search(r"confirmed demo-\w+: charged \d+\.\d\d", text), text[-2000:]
        assert re.search(r"cancelled demo-\w+: (OUT_OF_STOCK|PAYMENT_DECLINED)", text), text[-2000:]
        broker_pid = int((tmp_path / "run" / "kafka" / "broker.pid").read_text())
        first_pid = int((tmp_path / "run" / "worker.pid").read_text())
        assert alive(broker_pid) and alive(first_pid)

        os.kill(first_pid, signal.SIGKILL)  # as a user would: kill -9 $(cat .run/worker.pid)
        text = wait_for_text(output, run, lambda text: "the worker is back" in text, 180)
        assert f"the worker (pid {first_pid}) was killed by SIGKILL" in text
        worker_pid = int((tmp_path / "run" / "worker.pid").read_text())
        assert worker_pid != first_pid and alive(worker_pid) and not alive(first_pid)
        after = len(text)
        wait_for_text(output, run, lambda text: "confirmed demo-" in text[after:], 120)  # orders go on
    finally:
        run.send_signal(signal.SIGINT)
        stopping = time.monotonic()
        assert run.wait(90) == 0
        print(f"make run stopped {time.monotonic() - stopping:.1f}s after Ctrl-C")
    text = (tmp_path / "run.out").read_text()
    assert "stopped" in text
    assert not alive(broker_pid) and not alive(worker_pid)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left running: {leftovers}"
