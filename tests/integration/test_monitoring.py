"""Monitoring on a real broker: /metrics against a run with a known outcome, read by a real Prometheus;
the alerting rules checked by promtool."""

from __future__ import annotations

import random
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.topic_names import all_topic_names
from config.settings import Settings
from devtools.devstack import stop_process
from devtools.kafka_local import LocalKafka, free_port
from support.scenario import Mix, build_orders, seed, terminal, wait_for_seed
from support.topics import group_offsets, read_topic, setup_topics, wait_quiet, wait_until, write_events, write_raw
from support.worker import Worker, new_settings

pytestmark = pytest.mark.integration
RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus"
MIX = Mix(ok=40, out_of_stock=10, broke=10, scarce=45, tight=25)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make test` installs Debian's prometheus package"
    return path


def test_the_alerting_rules_are_valid_and_fire_on_what_they_watch() -> None:
    checked = subprocess.run([promtool(), "check", "rules", str(RULES / "alerts.yml")], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS: 5 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run([promtool(), "test", "rules", str(RULES / "alerts_test.yml")], capture_output=True,
                            text=True)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_the_compose_prometheus_config_is_valid_with_its_rules(tmp_path: Path) -> None:
    """``config/prometheus/prometheus.yml`` as docker-compose.yml mounts it, the rules beside it."""
    shutil.copy(RULES / "alerts.yml", tmp_path / "alerts.yml")
    config = (RULES / "prometheus.yml").read_text()
    assert "/etc/prometheus/alerts.yml" in config
    (tmp_path / "prometheus.yml").write_text(config.replace("/etc/prometheus/alerts.yml", "alerts.yml"))
    checked = subprocess.run([promtool(), "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                             text=True)
    assert checked.returncode == 0 and "SUCCESS: 5 rules found" in checked.stdout, checked.stdout + checked.stderr


def scrape(worker: Worker) -> Samples:
    """Every sample of ``/metrics``, parsed with prometheus_client's own parser."""
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def lags(samples: Samples) -> dict[tuple[str, int], float]:
    return {(dict(labels)["topic"], int(dict(labels)["partition"])): n for (name, labels), n in samples.items()
            if name == "streamsaga_consumer_lag_messages"}


def broker_lag(bootstrap: str, settings: Settings) -> dict[tuple[str, int], float]:
    """End offset minus the group's committed offset of every input partition, asked of the broker."""
    return {(tp.topic, tp.partition): float(end - (done or 0))
            for tp, (end, done) in group_offsets(bootstrap, settings).items()}


def test_metrics_count_the_run_and_a_real_prometheus_reads_them(kafka: LocalKafka, tmp_path: Path) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, "metrics", metrics_interval_s=1.0, faust_sensors=True)
    setup_topics(settings)
    write_events(settings, seed())
    worker = Worker(settings, tmp_path / "worker.log").start()
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        wait_for_seed(worker)
        orders, _ = build_orders(random.Random(77), MIX)
        write_events(settings, orders)
        order_topic = settings.topic("order-events")
        bad_topic = settings.topic("inventory-events")
        write_raw(kafka.bootstrap, bad_topic, [(b"bad", b"not json")])
        wait_until(lambda: len(terminal(read_topic(kafka.bootstrap, order_topic))) >= len(orders), 180,
                   "every order to end", every=2.0)
        ended = terminal(read_topic(kafka.bootstrap, order_topic))
        outcomes = Counter((b[0]["event_type"], b[0].get("reason")) for b in ended.values())
        dlq = bad_topic + ".DLQ"
        # the broker gauges are read every second: wait for one read after the dead letter
        def letters_read() -> dict[str, float] | None:
            ends = {dict(labels)["topic"]: n for (name, labels), n in scrape(worker).items()
                    if name == "streamsaga_dead_letter_topic_end_offset"}
            return ends if ends.get(dlq, 0) >= 1 else None

        # one dead letter; under exactly_once the transaction's commit marker takes an offset too
        ends = wait_until(letters_read, 30, "the dead-letter topic's end offset")
        assert ends[dlq] in (1, 2) and sum(ends.values()) == ends[dlq] and len(ends) == 8, ends
        samples = scrape(worker)

        assert value(samples, "streamsaga_sagas_started_total") == len(orders)
        assert value(samples, "streamsaga_saga_duration_seconds_count") == len(orders)
        assert value(samples, "streamsaga_sagas_ended_total", status="COMPLETED", reason="none") == \
            outcomes[("OrderConfirmed", None)]
        for reason in ("OUT_OF_STOCK", "PAYMENT_DECLINED"):
            assert value(samples, "streamsaga_sagas_ended_total", status="FAILED", reason=reason) == \
                outcomes[("OrderCancelled", reason)]
        cancelled = sum(n for (kind, _), n in outcomes.items() if kind == "OrderCancelled")
        assert value(samples, "streamsaga_compensations_total", action="cancel_order") == cancelled
        assert value(samples, "streamsaga_compensations_total", action="notify_customer") == cancelled
        assert value(samples, "streamsaga_dead_letters_total", topic=bad_topic, reason="BadMessage") == 1
        assert value(samples, "streamsaga_producer_sends_total", topic=order_topic) == len(orders)
        assert value(samples, "streamsaga_producer_send_errors_total", topic=order_topic) == 0
        assert value(samples, "streamsaga_under_replicated_partitions") == 0
        # once nothing moves, the lag of every input partition is what the broker says: end offset (last
        # stable offset) minus the group's committed offset; commit markers keep it a little above 0
        wait_quiet(kafka.bootstrap, all_topic_names(settings), 60)
        broker = broker_lag(kafka.bootstrap, settings)
        assert len(broker) == 8 * settings.partitions and max(broker.values()) < 10, broker
        wait_until(lambda: lags(scrape(worker)) == broker, 30, "the lag gauges to match the broker")
        assert value(samples, "faust_messages_received_total") > len(orders), "Faust's own sensors too"
        # the orders reach ingress; the outcomes the app wrote beside them on the same topic never reach an agent
        assert value(samples, "faust_messages_received_per_topic_total", topic=order_topic) == len(orders)

        prometheus, api = start_prometheus(tmp_path, worker)

        def scraped() -> float | None:
            result = query(api, "streamsaga_sagas_started_total")
            return float(result[0]["value"][1]) if result else None

        assert wait_until(scraped, 60, "Prometheus to scrape the worker", every=1.0) == len(orders)
        rules = get_json(f"{api}/api/v1/rules")["data"]["groups"][0]["rules"]
        assert len(rules) == 5 and all(rule["health"] == "ok" for rule in rules), rules
        assert query(api, 'up{job="streamsaga"}')[0]["value"][1] == "1"
    finally:
        if prometheus is not None:
            stop_process(prometheus)
        worker.stop()


def start_prometheus(tmp: Path, worker: Worker) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's Prometheus server on a loopback port, scraping the worker every second, with our rules."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: `make test` installs Debian's prometheus package"
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES / 'alerts.yml'}']\n"
        "scrape_configs:\n"
        "  - job_name: streamsaga\n"
        f"    static_configs: [{{targets: ['{worker.settings.web_host}:{worker.settings.web_port}']}}]\n"
    )
    log = (tmp / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}"
    wait_until(lambda: _ready(api), 30, "Prometheus to start", every=0.5)
    return process, api


def _ready(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return orjson.loads(response.read())


def query(api: str, promql: str) -> list[dict[str, Any]]:
    """An instant query through Prometheus' HTTP API."""
    body = get_json(f"{api}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result
