"""The Dockerfile and docker-compose.yml, checked without a container engine: they parse, and their ports,
settings, service names, volumes and health checks agree with the app's settings and with each other."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from config.settings import Settings
from devtools.kafka_local import KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[2]


def _stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's build stages, each a list of (instruction, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def _final_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in _stages()[-1]:
        if instruction == "ENV":
            env.update(dict(pair.split("=", 1) for pair in args.split()))
    return env


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def _services(prefix: str) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in _compose()["services"].items() if name.startswith(prefix)}


def test_the_image_is_built_in_stages_and_runs_as_a_user_without_dev_tools() -> None:
    stages = _stages()
    assert len(stages) >= 2, "a build stage, then a final stage"
    final = stages[-1]
    user = [args for instruction, args in final if instruction == "USER"]
    assert user and user[-1] not in ("root", "0")
    copied = " ".join(args for instruction, args in final if instruction == "COPY")
    for tooling in ("tests", "devtools", "bench", ".venv", "pyproject.toml"):
        assert tooling not in copied, f"{tooling} copied into the final image"
    installs = " ".join(args for instruction, args in stages[0] + final if instruction == "RUN")
    assert "[dev]" not in installs and "[bench]" not in installs
    assert "--no-cache-dir" in installs


def test_the_image_keeps_its_tables_on_a_volume_and_is_healthy_once_ready() -> None:
    env = _final_env()
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("STREAMSAGA_")})
    final = dict(_stages()[-1])
    assert final["VOLUME"] == str(settings.data_dir)
    assert final["EXPOSE"] == str(settings.web_port)
    assert settings.web_bind == "0.0.0.0"  # reachable from outside the container
    health = final["HEALTHCHECK"]
    assert "/readyz" in health and "STREAMSAGA_WEB_PORT" in health
    assert '"streamsaga", "worker"' in final["CMD"]


def test_compose_runs_three_kraft_brokers_of_one_quorum_with_the_version_the_tests_use() -> None:
    brokers = _services("kafka-")
    assert len(brokers) == 3
    envs = {name: spec["environment"] for name, spec in brokers.items()}
    assert {env["KAFKA_NODE_ID"] for env in envs.values()} == {"1", "2", "3"}
    for name, spec in brokers.items():
        env = envs[name]
        assert spec["image"] == f"apache/kafka:{KAFKA_VERSION}"
        assert spec["hostname"] == name
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        voters = dict(v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert voters == {envs[b]["KAFKA_NODE_ID"]: f"{b}:9093" for b in brokers}
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert any(volume.endswith(f":{env['KAFKA_LOG_DIRS']}") for volume in spec["volumes"])
        assert "healthcheck" in spec
    cluster = envs["kafka-1"]["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster + "==")) == 16, "a KRaft cluster id is a base64url uuid"


def test_compose_workers_reach_every_broker_and_each_other_with_settings_the_app_accepts() -> None:
    brokers = _services("kafka-")
    workers = _services("worker-")
    assert len(workers) >= 2
    data_dir = _final_env()["STREAMSAGA_DATA_DIR"]
    volumes = set(_compose()["volumes"])
    for name, spec in workers.items():
        env = {key: str(value) for key, value in spec["environment"].items()}
        settings = Settings.from_env(env)  # every variable is a setting, and a valid one
        assert set(env) <= {f"STREAMSAGA_{field.name.upper()}" for field in dataclasses.fields(Settings)}
        assert settings.bootstrap_servers.split(",") == [f"{b}:9092" for b in brokers]
        assert settings.replicas == 3 and settings.min_insync_replicas == 2
        assert settings.standby_replicas >= 1
        assert settings.web_host == spec["hostname"] == name  # routed views reach it by this name
        assert spec["ports"][0].endswith(f":{settings.web_port}")
        [volume] = spec["volumes"]
        assert volume.split(":")[0] in volumes and volume.endswith(f":{data_dir}")
        assert set(spec["depends_on"]) == set(brokers)
    assert len({spec["ports"][0].split(":")[0] for spec in workers.values()}) == len(workers)


def test_prometheus_scrapes_every_worker_and_loads_the_alerting_rules() -> None:
    prometheus = _compose()["services"]["prometheus"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in prometheus["volumes"])
    config_path = next(host for host, inside in mounts.items() if inside.endswith("prometheus.yml"))
    config = yaml.safe_load((ROOT / config_path).read_text())
    assert config["rule_files"] == [mounts["./config/prometheus/alerts.yml"]]
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    workers = _services("worker-")
    ports = {Settings.from_env({k: str(v) for k, v in spec["environment"].items()}).web_port
             for spec in workers.values()}
    assert sorted(job["static_configs"][0]["targets"]) == sorted(f"{name}:{port}" for name in workers
                                                                 for port in ports)
    rules = yaml.safe_load((ROOT / "config/prometheus/alerts.yml").read_text())
    assert any(rule.get("alert") == "StreamsagaUnderReplicatedPartitions" for group in rules["groups"]
               for rule in group["rules"])

