"""Session-wide fixtures: one real Kafka broker for every integration and end-to-end test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.kafka_local import BrokerConfig, LocalCluster, LocalKafka, cluster_configs, free_port, free_ports_in_a_row

# The shared checks live in tests/support (imported as "support"): rewrite their asserts too, so that
# a failure there says what differed.
pytest.register_assert_rewrite("support")

#: How much of each worker log a failed test shows.
LOG_TAIL_LINES = 150


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A single-node KRaft broker on a free loopback port, shared by the session."""
    data: Path = tmp_path_factory.mktemp("kafka")
    broker = LocalKafka(BrokerConfig(port=free_port(), controller_port=free_port(), data_dir=data, heap="512m"))
    broker.start(timeout=120)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three KRaft brokers, each a controller of one quorum, on free loopback ports; shared by the session."""
    configs = cluster_configs(3, first_port=free_ports_in_a_row(3), controller_ports=[free_port() for _ in range(3)],
                              data_dir=tmp_path_factory.mktemp("cluster"), heap="384m")
    nodes = LocalCluster(configs).start(timeout=180)
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed broker test shows the end of every worker log it wrote, so a CI failure can be read."""
    outcome = yield
    report = outcome.get_result()
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and isinstance(tmp, Path):
        for log in sorted(tmp.rglob("*.log")):
            if log.stem.isdigit():
                continue  # RocksDB's write-ahead logs, not a worker's
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"worker log {log.name} (last {len(lines)} lines)", "\n".join(lines)))
