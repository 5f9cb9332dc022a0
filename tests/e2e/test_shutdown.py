"""A worker given SIGTERM stops in seconds, also with clients waiting on ``?wait=``."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.kafka_local import LocalKafka
from support.topics import setup_topics
from support.worker import Worker, new_settings

pytestmark = pytest.mark.e2e


def test_sigterm_answers_open_waits_and_the_worker_exits(kafka: LocalKafka, tmp_path: Path) -> None:
    """aiohttp gives an open request 60 s to finish; a wait for a saga that cannot end now must not use them."""
    settings = new_settings(kafka.bootstrap, tmp_path, "stop")
    setup_topics(settings)
    worker = Worker(settings, tmp_path / "worker.log").start()
    answers: list[tuple[int, Any]] = []
    waiters = [threading.Thread(target=lambda: answers.append(worker.get("/orders/never-placed?wait=60", timeout=90)))
               for _ in range(2)]
    try:
        for waiter in waiters:
            waiter.start()
        time.sleep(1.0)  # both requests are in the worker's wait loop
        assert worker.process is not None
        stopped_at = time.monotonic()
        os.killpg(worker.process.pid, signal.SIGTERM)
        code = worker.process.wait(20)  # the bug held it for 60 s
        print(f"the worker exited {time.monotonic() - stopped_at:.1f}s after SIGTERM")
        for waiter in waiters:
            waiter.join(20)
    finally:
        worker.stop()
    assert code == 0, worker.log_tail()
    assert answers == [(503, {"error": "worker is stopping, retry shortly"})] * 2
