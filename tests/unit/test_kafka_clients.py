"""How the app's Kafka clients connect, from the settings, and the web token's check (no broker)."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from faust.auth import SASLCredentials, SSLCredentials

from app.faust_app import bearer_token
from app.kafka_clients import BrokersUnusable, client_options, faust_credentials
from config.settings import Settings
from support.browser import basic_authorization

SASL = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "alice",
        "sasl_password": "secret"}


def test_plaintext_clients_get_only_the_brokers() -> None:
    settings = Settings(broker="kafka://a:1;kafka://b:2")
    assert client_options(settings) == {"bootstrap_servers": "a:1,b:2", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None


def test_sasl_over_tls_clients_get_the_user_and_a_tls_context() -> None:
    options = client_options(Settings(**SASL))  # type: ignore[arg-type]
    assert isinstance(options.pop("ssl_context"), ssl.SSLContext)
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "SASL_SSL",
                       "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "alice",
                       "sasl_plain_password": "secret"}
    credentials = faust_credentials(Settings(**SASL))  # type: ignore[arg-type]
    assert isinstance(credentials, SASLCredentials)
    assert (credentials.username, credentials.mechanism.value, credentials.protocol.value) == (
        "alice", "SCRAM-SHA-512", "SASL_SSL")
    assert isinstance(faust_credentials(Settings(security_protocol="SSL")), SSLCredentials)


def test_a_ca_file_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrokersUnusable, match="cannot read STREAMSAGA_SSL_CAFILE="):
        client_options(Settings(security_protocol="SSL", ssl_cafile=str(tmp_path / "missing.pem")))


@pytest.mark.parametrize(("path", "header", "status"), [
    ("/livez", None, 200), ("/readyz", None, 200), ("/metrics", None, 200),
    ("/inventory/SKU-A", None, 401), ("/inventory/SKU-A", "Bearer wrong", 401), ("/stats", "tok", 401),
    ("/inventory/SKU-A", "Bearer tok", 200), ("/dashboard", "Bearer tok", 200), ("/health", None, 401),
])
def test_the_web_token_guards_every_path_but_the_probes(path: str, header: str | None, status: int) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    request = make_mocked_request("GET", path, headers={"Authorization": header} if header else {})
    response = asyncio.run(bearer_token("tok")(request, handler))
    assert response.status == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def basic(user: str, password: str) -> str:
    """An ``Authorization: Basic`` header's value."""
    return basic_authorization(user, password)["Authorization"]


@pytest.mark.parametrize(("method", "path", "header", "status"), [
    ("GET", "/dashboard", basic("anyone", "tok"), 200), ("HEAD", "/stats", basic("", "tok"), 200),
    ("GET", "/dashboard", basic("tok", "wrong"), 401), ("GET", "/dashboard", basic("anyone", ""), 401),
    ("GET", "/dashboard", "Basic not-base64!", 401),
    ("GET", "/dashboard", "Basic " + base64.b64encode(b"tok").decode(), 401),  # no colon: no password
    ("POST", "/orders", basic("anyone", "tok"), 401), ("POST", "/orders", "Bearer tok", 200),
])
def test_a_browser_gives_the_web_token_as_a_basic_password_but_only_to_read(
    method: str, path: str, header: str, status: int
) -> None:
    """A browser remembers a Basic password for the site: another site's form must not place orders with it."""
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    request = make_mocked_request(method, path, headers={"Authorization": header})
    response = asyncio.run(bearer_token("tok")(request, handler))
    assert response.status == status
    if status == 401:
        challenges = response.headers.getall("WWW-Authenticate")
        assert challenges[0] == 'Bearer realm="streamsaga"'
        assert challenges[1:] == ([] if method == "POST" else ['Basic realm="streamsaga", charset="UTF-8"'])
