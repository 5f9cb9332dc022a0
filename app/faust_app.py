"""The Faust app object for our settings: our transport, table store and web server, nothing implicit."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiohttp import web as aiohttp_web
from aiohttp.web_runner import AppRunner
from faust.types import ProducerT, TransportT
from faust.web.drivers import aiohttp as faust_aiohttp

from agents.faust_io import consumed_from
from agents.local_delivery import LocalDelivery
from app.commit_gate import CommitGate
from app.kafka_clients import faust_credentials
from app.transactions import Transport
from config.settings import Settings
from tables.held_changelog import Table
from tables.recovery import TableManager
from tables.uncommitted import Uncommitted

#: how long a stopping worker lets an open request finish (aiohttp's default is 60 s)
WEB_SHUTDOWN_S = 3.0


class Web(faust_aiohttp.Web):
    """Faust's aiohttp server without Faust's own pages (``/``, ``/router``, ``/table``, ...): ours only.

    A stopping worker gives open requests a few seconds, not aiohttp's minute.
    """

    default_blueprints = production_blueprints = debug_blueprints = optional_blueprints = []

    def __init__(self, app: faust.App, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._runner = AppRunner(self.web_app, access_log=None, shutdown_timeout=WEB_SHUTDOWN_S)


class App(faust.App):
    """A Faust app that knows our settings and builds our transport and web server."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(settings.group_id, **options)
        self.settings = settings
        self.commit_gate = CommitGate()
        #: full public topic name -> the event types the app writes there; the consumer skips them
        self.own_outputs: dict[str, frozenset[str]] = {}
        #: the internal partitions this worker handles in place, under exactly_once (``tables.recovery``)
        self.local_delivery = LocalDelivery(consumed_from)
        #: under exactly_once, the table partitions written since the last commit, and those left dirty
        self.uncommitted = Uncommitted()
        self._starting_producer = asyncio.Lock()

    async def maybe_start_producer(self) -> ProducerT:
        """Faust's, without its stampede guard once the producer runs.

        Faust calls this for every message it sends, and the guard (``mode.utils.futures.stampede``) yields to
        the event loop three times per call: for the eight events a saga sends, 24 turns of the loop, each with
        its ``epoll`` call and every other ready callback, out of about 30 the saga took. Before the producer
        runs, a lock keeps two callers from starting it at once, as the guard did.
        """
        if self.in_transaction:
            return self.consumer.transactions  # type: ignore[attr-defined]  # Faust's consumer has them
        producer = self.producer
        if not producer.started:
            async with self._starting_producer:
                await producer.maybe_start()
        return producer

    def _new_transport(self) -> TransportT:
        return Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> TransportT:
        return Transport(self.conf.broker_producer, self)

    def _new_web(self) -> Web:
        return Web(self)


@aiohttp_web.middleware
async def json_not_found(
    request: aiohttp_web.Request, handler: Callable[[aiohttp_web.Request], Awaitable[aiohttp_web.StreamResponse]]
) -> aiohttp_web.StreamResponse:
    """A path nothing serves gets the contract's JSON 404, not aiohttp's text page."""
    try:
        return await handler(request)
    except aiohttp_web.HTTPNotFound:
        return aiohttp_web.json_response({"error": f"no such page: {request.path}"}, status=404)
    except aiohttp_web.HTTPMethodNotAllowed as exc:
        return aiohttp_web.json_response({"error": f"{request.method} is not allowed on {request.path}"},
                                         status=405, headers={"Allow": ",".join(sorted(exc.allowed_methods))})


#: what a monitor or an orchestrator must reach without the web token
OPEN_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
Handler = Callable[[aiohttp_web.Request], Awaitable[aiohttp_web.StreamResponse]]


def bearer_headers(token: str) -> dict[str, str]:
    """The header a request needs to pass :func:`bearer_token` (none when no token is set)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def bearer_token(token: str) -> Callable[[aiohttp_web.Request, Handler], Awaitable[aiohttp_web.StreamResponse]]:
    """Every path but ``OPEN_PATHS`` answers 401 unless the request carries the token.

    API clients send ``Authorization: Bearer <token>``. A browser cannot add that header to a page it is
    asked to open, so a GET or HEAD also takes the token as the password of HTTP Basic (any user name):
    its 401 challenges for Basic as well, the browser asks for it once and sends it with the dashboard's
    own requests. Basic is never taken for a POST, so a browser's remembered password cannot place an
    order from another site's form.
    """
    expected = f"Bearer {token}".encode()
    secret = token.encode()

    @aiohttp_web.middleware
    async def check(request: aiohttp_web.Request, handler: Handler) -> aiohttp_web.StreamResponse:
        given = request.headers.get("Authorization", "")
        safe = request.method in ("GET", "HEAD")
        if request.path in OPEN_PATHS or hmac.compare_digest(given.encode(), expected) or (
                safe and hmac.compare_digest(basic_password(given), secret)):
            return await handler(request)
        reason = "a bearer token is needed" if not given else "the bearer token is not the right one"
        challenges = ['Bearer realm="streamsaga"', *(['Basic realm="streamsaga", charset="UTF-8"'] if safe else [])]
        response = aiohttp_web.json_response({"error": f"{reason}: Authorization: Bearer <STREAMSAGA_WEB_TOKEN>"},
                                             status=401)
        for challenge in challenges:
            response.headers.add("WWW-Authenticate", challenge)
        return response

    return check


def basic_password(header: str) -> bytes:
    """The password of an ``Authorization: Basic`` header, or nothing when it is not one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return b""
    try:
        return base64.b64decode(encoded.strip(), validate=True).partition(b":")[2]
    except binascii.Error:
        return b""


def create_app(settings: Settings) -> App:
    """The app object, configured from the settings; the composition root adds the rest."""
    return App(
        settings,
        broker=settings.broker,
        broker_credentials=faust_credentials(settings),
        store="rocksdb://",
        Table=Table,
        TableManager=TableManager,
        datadir=str(settings.data_dir / "worker"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replicas,
        processing_guarantee=settings.processing_guarantee,
        producer_acks=-1,
        producer_linger=settings.producer_linger_ms / 1000,
        broker_commit_interval=settings.commit_interval,
        table_standby_replicas=settings.standby_replicas,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        web_host=settings.web_host,
        web_bind=settings.web_bind or settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
        web_application_options={"middlewares": [*([bearer_token(settings.web_token)] if settings.web_token else []),
                                                  json_not_found]},
        consumer_auto_offset_reset="earliest",
    )
