"""A managed Kafka's connections: SASL over TLS with a CA the test makes, a web token, and clear errors.

The broker here has a plaintext listener and a SASL_SSL one (PLAIN and SCRAM-SHA-512 users) with a
certificate signed by a CA made with openssl; the app and its CLI use only the SASL_SSL one.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from devtools.kafka_local import BrokerConfig, LocalKafka, SecureListener, free_port
from support.browser import basic_authorization, chromium
from support.faults import check_routed_views, key_paths, served_view, two_workers
from support.scenario import seed, wait_for_seed
from support.tls import Authority, make_authority, make_broker_pem
from support.topics import setup_topics, write_events
from support.worker import Worker, new_settings

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "alice-secret"
TOKEN = "s3cret-token"


@dataclasses.dataclass(frozen=True)
class SecureBroker:
    broker: LocalKafka
    port: int
    authority: Authority
    stranger: Authority  # a CA that signed nothing of the broker's


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    root = tmp_path_factory.mktemp("secure")
    authority = make_authority(root / "tls", "streamsaga-test-ca")
    stranger = make_authority(root / "other", "some-other-ca")
    port = free_port()
    listener = SecureListener(port=port, pem=make_broker_pem(root / "tls", authority), users={USER: PASSWORD})
    broker = LocalKafka(BrokerConfig(port=free_port(), controller_port=free_port(), data_dir=root / "kafka",
                                     heap="384m", secure=listener)).start(timeout=120)
    try:
        yield SecureBroker(broker, port, authority, stranger)
    finally:
        broker.stop()


def _secure_settings(secure: SecureBroker, tmp_path: Path, name: str, **overrides: object) -> Settings:
    base = new_settings(f"127.0.0.1:{secure.port}", tmp_path, name, security_protocol="SASL_SSL",
                        sasl_mechanism="SCRAM-SHA-512", sasl_username=USER, sasl_password=PASSWORD,
                        ssl_cafile=str(secure.authority.cert), web_token=TOKEN)
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def _cli(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    program = str(Path(sys.executable).with_name("streamsaga"))
    return subprocess.run([program, *args], env={**os.environ, **settings.to_env()}, capture_output=True, text=True,
                          timeout=timeout)


def test_a_worker_and_the_cli_on_sasl_ssl_place_an_order_and_the_views_want_the_token(
    secure: SecureBroker, tmp_path: Path
) -> None:
    settings = _secure_settings(secure, tmp_path, "sasl")
    setup_topics(settings)  # the app's admin client, over SASL_SSL
    write_events(settings, seed())
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        wait_for_seed(worker)
        status, placed = worker.post("/orders", b'{"customer_id":"rich-1","items":[{"sku":"SKU-A","quantity":1,'
                                     b'"unit_price":"2.00"}]}')
        assert status == 202, placed
        status, order = worker.get(f"/orders/{placed['order_id']}?wait=30")
        assert (status, order["status"]) == (200, "COMPLETED")

        for path in ("/livez", "/readyz", "/metrics"):  # for monitors and orchestrators
            assert worker.get(path, token="")[0] == 200, path
        for path in (f"/orders/{placed['order_id']}", "/inventory/SKU-A", "/stats", "/dashboard", "/health", "/nope"):
            status, body = worker.get(path, token="")
            assert status == 401 and "bearer token is needed" in body["error"], (path, body)
            assert worker.get(path, token="wrong")[0] == 401, path

        listed = _cli(dataclasses.replace(settings, sasl_mechanism="PLAIN"), "topics", "list")
        assert listed.returncode == 0, listed.stderr
        assert settings.topic("order-events") in listed.stdout
    finally:
        worker.stop()


@pytest.mark.parametrize(("change", "says"), [
    ({"sasl_password": "not-it"}, f"refused user '{USER}' (SCRAM-SHA-512)"),
    ({"sasl_mechanism": "PLAIN", "sasl_username": "mallory"}, "refused user 'mallory' (PLAIN)"),
    ("stranger", "has a certificate this client does not trust"),
    ({"security_protocol": "PLAINTEXT"}, "it may expect another STREAMSAGA_SECURITY_PROTOCOL than PLAINTEXT"),
])
def test_a_wrong_password_or_an_unknown_ca_is_one_clear_error_at_once(
    secure: SecureBroker, tmp_path: Path, change: dict[str, str] | str, says: str
) -> None:
    """The worker and a CLI command each exit with the reason instead of retrying in their logs."""
    overrides = {"ssl_cafile": str(secure.stranger.cert)} if change == "stranger" else change
    assert isinstance(overrides, dict)
    settings = _secure_settings(secure, tmp_path, "wrong", **overrides)
    started = time.monotonic()
    worker = _cli(settings, "worker", "-l", "info")
    took = time.monotonic() - started
    assert worker.returncode == 1, worker.stdout[-2000:] + worker.stderr[-2000:]
    assert f"streamsaga worker: error: cannot use the Kafka brokers: the broker at 127.0.0.1:{secure.port}" \
           in worker.stderr and says in worker.stderr, worker.stderr
    command = _cli(settings, "dlq", "list")
    assert command.returncode == 1 and says in command.stderr, command.stderr
    print(f"\n[security] {says!r}: the worker exited {took:.1f} s after it started")


def test_views_routed_between_two_workers_carry_the_web_token(kafka: LocalKafka, tmp_path: Path) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, "token", web_token=TOKEN)
    setup_topics(settings)
    with two_workers(tmp_path, settings) as (first, second):
        want = {path: served_view(first, path) for path in key_paths()}
        assert all(status == 200 for status, _ in want.values()), want
        check_routed_views(first, second, want)  # half the keys are the other worker's: routed with the token
        assert first.get("/stats")[0] == second.get("/stats")[0] == 200  # gathered from both, with the token
        assert first.get("/stats")[1] == second.get("/stats")[1]
        for path in key_paths():
            assert first.get(path, token="")[0] == second.get(path, token="")[0] == 401, path

        # a browser: it asks for a password once and sends it as Basic, also with the page's own requests
        as_browser = basic_authorization("viewer", TOKEN)
        for path in key_paths():
            assert first.get(path, headers=as_browser) == second.get(path, headers=as_browser) == want[path], path
        page = urllib.parse.urlsplit(first.url)
        opened = chromium("--dump-dom", f"http://viewer:{TOKEN}@{page.netloc}/dashboard")
        assert 'data-loaded="yes"' in opened.stdout, opened.stdout[-2000:] + opened.stderr[-2000:]
        refused = chromium("--dump-dom", f"{first.url}/dashboard")  # headless, it cannot ask for the password
        assert "data-loaded" not in refused.stdout, refused.stdout[-2000:]
        assert "ERR_INVALID_AUTH_CREDENTIALS" in refused.stderr, refused.stderr[-2000:]
        order = b'{"customer_id":"rich-1","items":[{"sku":"SKU-A","quantity":1,"unit_price":"2.00"}]}'
        assert first.post("/orders", order, headers=as_browser)[0] == 401  # reading only: no order from a form
