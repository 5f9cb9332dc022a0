"""The README's kcat lines, run as written (only the broker's address differs) against a running worker."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.demo import seed_events
from devtools.kafka_local import LocalKafka
from support.topics import setup_topics, wait_until, write_events, write_raw
from support.worker import Worker, new_settings

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "README.md"
#: how long a consuming kcat line runs before the test has seen enough of what it prints
FOLLOW_S = 8.0


def readme_kcat_lines() -> list[str]:
    """The shell lines of the README's kcat block (a line ending in a backslash joined to the next)."""
    block = README.read_text().split("With [kcat]", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.replace("\\\n", "").splitlines() if line.strip()]


def shell(line: str, bootstrap: str, follow: bool) -> str:
    """Run one README line with the test broker's address; a consuming line is stopped after a while."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is missing: `make test` installs Debian's kcat package"
    command = line.replace("127.0.0.1:9092", bootstrap)
    if not follow:
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout
    process = subprocess.Popen(["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, _ = process.communicate(timeout=FOLLOW_S)
    except subprocess.TimeoutExpired:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    return out


def test_the_readme_s_kcat_lines_place_an_order_and_show_its_outcome(kafka: LocalKafka, tmp_path: Path) -> None:
    lines = readme_kcat_lines()
    assert len(lines) == 4 and sum(" -P " in line for line in lines) == 1, lines
    settings = new_settings(kafka.bootstrap, tmp_path, "kcat", topic_prefix="")  # the README's topic names
    setup_topics(settings)
    write_events(settings, seed_events())
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: worker.get("/wallets/customer-2")[0] == 200, 60, "the demo seed")
        (produce,) = [line for line in lines if " -P " in line]
        shell(produce, kafka.bootstrap, follow=False)
        assert worker.get("/orders/order-42?wait=30")[1]["status"] == "COMPLETED"
        write_raw(kafka.bootstrap, "order-events", [(b"bad-1", b"not json")])
        wait_until(lambda: "bad-1" in shell(lines[2], kafka.bootstrap, follow=True), 60, "the dead letter")

        orders, sagas, letters = (shell(line, kafka.bootstrap, follow=True) for line in lines[:3])
        assert re.search(r'^order-42 \{.*"event_type":"OrderPlaced"', orders, re.M), orders
        assert re.search(r'^order-42 \{.*"event_type":"OrderConfirmed"', orders, re.M), orders
        assert re.search(r'^order-42 \{.*"event_type":"SagaCompleted"', sagas, re.M), sagas
        assert re.search(r"^bad-1 .*failure\.reason=value is not JSON.* not json$", letters, re.M), letters
    finally:
        worker.stop()
