"""Pure tests of devtools.kafka_local: rendered configs, jar cache logic, guards (no broker)."""

from __future__ import annotations

import base64
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from devtools.kafka_local import (
    CACHE_ENV,
    BrokerConfig,
    KafkaLaunchError,
    LocalKafka,
    cluster_id,
    ensure_jars,
    free_port,
    log4j2_properties,
    main,
    server_properties,
    stop_from_pidfile,
)


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip())
    return {key.strip(): value.strip() for key, value in pairs}


def _fake_tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _cached(cache: Path, version: str = "4.3.1") -> Path:
    cache.mkdir(parents=True)
    (cache / f".fetched-{version}").write_text("ok\n")
    return cache / "libs"


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    props = _props(server_properties(BrokerConfig(port=29092, data_dir=tmp_path)))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == ("PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093")
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.security.protocol.map"] == ("PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT")
    assert props["log.dirs"] == str(tmp_path.resolve() / "logs")
    assert props["num.partitions"] == "8"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_server_properties_single_replica_internal_topics(tmp_path: Path) -> None:
    props = _props(server_properties(BrokerConfig(data_dir=tmp_path)))

    assert props["offsets.topic.replication.factor"] == "1"
    assert props["offsets.topic.num.partitions"] == "8"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["transaction.state.log.num.partitions"] == "8"


def test_a_dead_workers_timed_out_transaction_is_aborted_within_a_second_of_its_timeout(tmp_path: Path) -> None:
    props = _props(server_properties(BrokerConfig(data_dir=tmp_path)))

    assert props["transaction.abort.timed.out.transaction.cleanup.interval.ms"] == "1000"


def test_extra_properties_are_added_and_win_over_the_defaults(tmp_path: Path) -> None:
    cfg = BrokerConfig(data_dir=tmp_path, extra=(("log.segment.bytes", "1048576"), ("num.partitions", "2")))
    props = _props(server_properties(cfg))

    assert (props["log.segment.bytes"], props["num.partitions"]) == ("1048576", "2")


def test_explicit_controller_port_and_partitions(tmp_path: Path) -> None:
    cfg = BrokerConfig(port=1000, controller_port=2000, partitions=3, data_dir=tmp_path)
    props = _props(server_properties(cfg))

    assert cfg.quorum_port == 2000
    assert props["controller.quorum.voters"] == "1@127.0.0.1:2000"
    assert props["num.partitions"] == "3"


def test_bootstrap_uses_host_and_port(tmp_path: Path) -> None:
    cfg = BrokerConfig(host="localhost", port=1234, data_dir=tmp_path)

    assert cfg.bootstrap == "localhost:1234"
    assert LocalKafka(cfg).bootstrap == "localhost:1234"
    assert LocalKafka(BrokerConfig(data_dir=tmp_path)).bootstrap == "127.0.0.1:9092"


def test_log4j2_writes_warn_to_broker_log(tmp_path: Path) -> None:
    props = _props(log4j2_properties(BrokerConfig(data_dir=tmp_path)))

    assert props["appender.file.fileName"] == str(tmp_path.resolve() / "broker.log")
    assert props["rootLogger.level"] == "WARN"
    assert props["rootLogger.appenderRef.file.ref"] == props["appender.file.name"]


def test_cluster_id_is_unpadded_base64url_uuid() -> None:
    cid = cluster_id()

    assert len(cid) == 22
    assert "=" not in cid
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16
    assert cid != cluster_id()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_ensure_jars_reuses_cache_without_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = _cached(tmp_path / "cache")
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn or java: must not be needed

    assert ensure_jars(tmp_path / "cache") == libs


def test_ensure_jars_default_cache_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = _cached(tmp_path / "env-cache")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env-cache"))

    assert ensure_jars() == libs


def test_ensure_jars_without_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(KafkaLaunchError, match="'mvn' not found"):
        ensure_jars(tmp_path / "cache")


def test_ensure_jars_reports_maven_output_and_leaves_no_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_tool(bin_dir, "mvn", "echo 'Could not resolve kafka_2.13' >&2; exit 1")
    _fake_tool(bin_dir, "java", "exit 0")
    monkeypatch.setenv("PATH", str(bin_dir))

    with pytest.raises(KafkaLaunchError, match="Could not resolve kafka_2.13"):
        ensure_jars(tmp_path / "cache")
    assert not list((tmp_path / "cache").glob(".fetched-*"))
    assert "<artifactId>kafka_2.13</artifactId>" in (tmp_path / "cache" / "pom.xml").read_text()


def test_start_without_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    _cached(cache)
    monkeypatch.setenv("PATH", str(tmp_path))
    cfg = BrokerConfig(
        port=free_port(),
        controller_port=free_port(),
        data_dir=tmp_path / "data",
        cache_dir=cache,
    )
    kafka = LocalKafka(cfg)

    with pytest.raises(KafkaLaunchError, match="'java' not found"):
        kafka.start()
    assert kafka.pid is None and not kafka.is_running()


def test_start_refuses_busy_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        kafka = LocalKafka(BrokerConfig(port=port, data_dir=tmp_path))

        with pytest.raises(KafkaLaunchError, match=f"port {port} is already in use"):
            kafka.start()


def test_stop_from_pidfile_without_broker(tmp_path: Path) -> None:
    assert stop_from_pidfile(tmp_path) is False

    (tmp_path / "broker.pid").write_text("garbage\n")
    assert stop_from_pidfile(tmp_path) is False
    assert not (tmp_path / "broker.pid").exists()


def test_stop_from_pidfile_never_kills_a_non_kafka_pid(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        (tmp_path / "broker.pid").write_text(f"{bystander.pid}\n")

        assert stop_from_pidfile(tmp_path, timeout=0.1) is False
        assert bystander.poll() is None
        assert not (tmp_path / "broker.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_is_idempotent_and_keeps_foreign_pidfile(tmp_path: Path) -> None:
    (tmp_path / "broker.pid").write_text("12345\n")
    kafka = LocalKafka(BrokerConfig(data_dir=tmp_path))

    kafka.stop()
    kafka.stop()
    assert (tmp_path / "broker.pid").exists()


def test_cli_stop_without_broker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stop", "--data-dir", str(tmp_path)]) == 0
    assert "no running Kafka" in capsys.readouterr().err


def test_cli_rejects_unknown_command() -> None:
    with pytest.raises(SystemExit):
        main(["restart"])


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage tool would read a leading dash as an option and refuse to format."""
    import uuid

    from devtools import kafka_local

    dash_first = uuid.UUID(bytes=b"\xfb" + b"\x00" * 15)  # base64url of 0xfb... begins with "-"
    fresh = iter([dash_first, uuid.UUID(int=1)])
    monkeypatch.setattr(kafka_local.uuid, "uuid4", lambda: next(fresh))
    assert not kafka_local.cluster_id().startswith("-")

