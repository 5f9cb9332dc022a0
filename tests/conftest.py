"""Session-wide fixtures: one real Kafka broker for every integration and end-to-end test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.kafka_local import BrokerConfig, LocalKafka, free_port


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
