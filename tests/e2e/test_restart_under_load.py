"""A worker killed under load and restarted on its own data: every order ends as planned, the tables add up.

This is how orders were lost before bb4a5e1 (263 of these 600 when this test ran on e6ef37f): the
restarted worker's first fetch, made while its recovery ended, drained the paused inputs, and Faust
committed past what it had dropped. It takes a restart with a backlog of orders, which is what
``make run``'s supervisor does after a ``kill -9``; the orders come from ``streamsaga load``, and
``streamsaga tables audit`` checks stock, wallets, sagas and ``/stats`` against the events after.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from app.ops.load import Plan
from devtools.kafka_local import free_port
from support.devstack import REPOSITORY, alive, start_devstack, wait_for_text

pytestmark = pytest.mark.e2e
ORDERS, RATE, SEED = 600, 60, 11


def planned_outcomes() -> Counter[str]:
    """What ``streamsaga load --seed SEED`` means each order to end as: the same draws as the command makes."""
    plan, rng = Plan("any", customers=100, skus=20), random.Random(SEED)
    outcomes: Counter[str] = Counter()
    for n in range(ORDERS):
        order = plan.order(n, rng, fail_share=0.1)
        if any(line.sku == plan.empty for line in order.items):
            outcomes["OUT_OF_STOCK"] += 1
        elif order.customer_id == plan.broke:
            outcomes["PAYMENT_DECLINED"] += 1
        else:
            outcomes["CONFIRMED"] += 1
    return outcomes


def streamsaga(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """The CLI as a user runs it, beside ``make run``."""
    return subprocess.Popen([str(Path(sys.executable).with_name("streamsaga")), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPOSITORY)


def test_a_worker_killed_under_load_comes_back_on_its_data_and_every_order_ends_as_planned(tmp_path: Path) -> None:
    env = {**os.environ, "STREAMSAGA_BROKER": f"kafka://127.0.0.1:{free_port()}",
           "STREAMSAGA_WEB_PORT": str(free_port()), "STREAMSAGA_DATA_DIR": str(tmp_path / "run"),
           "STREAMSAGA_DEMO_ORDERS": "0", "STREAMSAGA_APP_ID": "restart-e2e"}
    output = tmp_path / "run.out"
    run = start_devstack(env, output)
    load: subprocess.Popen[str] | None = None
    restarted = 0
    try:
        wait_for_text(output, run, lambda text: "streamsaga is running" in text, 180)
        load = streamsaga(env, "load", "--orders", str(ORDERS), "--rate", str(RATE), "--seed", str(SEED),
                          "--timeout", "240")
        # the first outcomes: the worker is past the seed and deep in the orders, with more arriving
        wait_for_text(output, run, lambda text: text.count("confirmed load-") >= 20, 120)
        killed = int((tmp_path / "run" / "worker.pid").read_text())
        os.kill(killed, signal.SIGKILL)
        killed_at = time.monotonic()
        text = wait_for_text(output, run, lambda text: "the worker is back" in text, 180)
        back = time.monotonic() - killed_at
        assert f"the worker (pid {killed}) was killed by SIGKILL" in text
        restarted = int((tmp_path / "run" / "worker.pid").read_text())

        said, _ = load.communicate(timeout=300)
        assert load.returncode == 0, said[-3000:]
        ended = re.search(rf"outcomes: (\d+) of {ORDERS} orders: (.*)", said)
        assert ended, said[-3000:]
        got = Counter({kind: int(n) for kind, n in re.findall(r"(\w+) (\d+)", ended.group(2))})
        assert (int(ended.group(1)), got) == (ORDERS, planned_outcomes()), said[-3000:]

        audit = streamsaga(env, "tables", "audit", "--wait", "60")
        checked, _ = audit.communicate(timeout=180)
        assert audit.returncode == 0, checked[-3000:]
        print(f"\n[restart under load] ready again {back:.1f} s after the kill; {ended.group(0)}; "
              f"audit: {checked.strip().splitlines()[-1]}")
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait(10)
        run.send_signal(signal.SIGINT)
        assert run.wait(90) == 0, output.read_text()[-3000:]
    assert restarted and not alive(restarted)
