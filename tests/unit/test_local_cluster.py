"""A local cluster's configs, make run's workers and its guard on a data directory (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.admin import topic_configs
from config.settings import Settings
from devtools.devstack import StateMismatch, check_state, worker_settings
from devtools.kafka_local import BrokerConfig, KafkaLaunchError, LocalCluster, cluster_configs, server_properties


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line.strip())


def test_three_nodes_are_brokers_on_consecutive_ports_and_voters_of_one_quorum(tmp_path: Path) -> None:
    configs = cluster_configs(3, first_port=9092, controller_ports=[9192, 9193, 9194], data_dir=tmp_path)
    props = [_props(server_properties(config)) for config in configs]

    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert [p["advertised.listeners"] for p in props] == [f"PLAINTEXT://127.0.0.1:{n}" for n in (9092, 9093, 9094)]
    assert {p["controller.quorum.voters"] for p in props} == {"1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194"}
    assert props[1]["listeners"] == "PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:9193"
    assert len({p["log.dirs"] for p in props}) == 3
    for p in props:  # every topic, the group offsets and the transaction log on 3, a write on at least 2
        assert p["default.replication.factor"] == p["offsets.topic.replication.factor"] == "3"
        assert p["transaction.state.log.replication.factor"] == "3"
        assert p["min.insync.replicas"] == p["transaction.state.log.min.isr"] == "2"
    assert LocalCluster(configs).bootstrap == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"


def test_one_broker_keeps_one_replica_of_everything(tmp_path: Path) -> None:
    props = _props(server_properties(BrokerConfig(data_dir=tmp_path)))
    assert props["default.replication.factor"] == props["min.insync.replicas"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"


def test_a_cluster_needs_a_controller_port_per_node(tmp_path: Path) -> None:
    with pytest.raises(KafkaLaunchError, match="3 controller ports"):
        cluster_configs(3, first_port=9092, controller_ports=[9192], data_dir=tmp_path)


def test_nodes_formatted_for_different_clusters_are_refused_before_any_starts(tmp_path: Path) -> None:
    configs = cluster_configs(2, first_port=1, controller_ports=[2, 3], data_dir=tmp_path)
    for number, config in enumerate(configs):
        (config.data_dir / "logs").mkdir(parents=True)
        (config.data_dir / "logs" / "meta.properties").write_text(f"version=1\ncluster.id=c{number}\nnode.id=1\n")
    with pytest.raises(KafkaLaunchError, match="different clusters"):
        LocalCluster(configs).start()


def test_each_local_worker_has_its_own_web_port_and_data_directory(tmp_path: Path) -> None:
    members = worker_settings(Settings(local_workers=3, web_port=7000, data_dir=tmp_path))

    assert [m.web_port for m in members] == [7000, 7001, 7002]
    assert [m.data_dir for m in members] == [tmp_path, tmp_path / "worker-2", tmp_path / "worker-3"]
    assert {m.app_id for m in members} == {"streamsaga"}  # one consumer group


def test_a_data_directory_made_with_another_number_of_brokers_is_refused(tmp_path: Path) -> None:
    check_state(Settings(data_dir=tmp_path, local_brokers=3))
    check_state(Settings(data_dir=tmp_path, local_brokers=3))  # the same again is fine
    with pytest.raises(StateMismatch, match="3 local broker.*STREAMSAGA_LOCAL_BROKERS=1.*make clean"):
        check_state(Settings(data_dir=tmp_path, local_brokers=1))


def test_a_data_directory_from_before_the_marker_counts_as_one_broker(tmp_path: Path) -> None:
    (tmp_path / "kafka").mkdir()
    with pytest.raises(StateMismatch, match="1 local broker"):
        check_state(Settings(data_dir=tmp_path, local_brokers=3))
    check_state(Settings(data_dir=tmp_path))


def test_replicated_topics_need_two_copies_of_a_write() -> None:
    assert topic_configs(Settings()) == {}
    assert topic_configs(Settings(), compacted=True) == {"cleanup.policy": "compact"}
    assert topic_configs(Settings(local_brokers=3), compacted=True) == {"cleanup.policy": "compact",
                                                                        "min.insync.replicas": "2"}
