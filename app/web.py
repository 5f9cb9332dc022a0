"""The contract's web views: order intake, table views routed to the worker that owns the key, health."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from faust import web
from faust.types import AppT, TableT

from app.stats_view import Stats, StatsUnavailable
from app.topics import Topics
from models.events import utc_now
from models.handlers import CUSTOMERS, SAGAS, STATS, STOCK, WALLETS
from models.order_request import order_from_request
from models.paged import is_page
from models.saga import SagaState
from models.stock import Stock
from models.topics import ORDER_EVENTS
from models.wallet import Wallet
from tables.windows import WINDOWS, window_views

MAX_WAIT_S = 60.0
#: how long a view routed to the worker that owns its key may take beyond the order's ``?wait=``
ROUTE_TIMEOUT_S = 10.0
DASHBOARD = Path(__file__).with_name("dashboard.html")
CSP = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"
POLL_S = 0.05
View = Callable[..., Awaitable[web.Response]]


def _json(view: web.View, body: Any, status: int = 200) -> web.Response:
    """A JSON response written with orjson."""
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status)


def _not_found(view: web.View, what: str, key: str) -> web.Response:
    """The contract's 404 for an unknown key."""
    return _json(view, {"error": f"{what} {key!r} not found"}, status=404)


def _stored(view: web.View, raw: bytes | None, what: str, key: str, render: Callable[[bytes], Any]) -> web.Response:
    """A table value rendered as JSON, or the contract's 404."""
    return _not_found(view, what, key) if raw is None else _json(view, render(raw))


def _head(table: TableT, key: str) -> bytes | None:
    """A sku's or wallet's stored head; a page of its memory (``models.paged``) is no sku or customer."""
    return None if is_page(key) else table.get(key)


def parse_wait(raw: str | None) -> float | None:
    """Seconds to wait for an order to end: a finite number from 0 to 60, or None when it is not."""
    try:
        wait = float(raw) if raw is not None else 0.0
    except ValueError:
        return None
    return wait if math.isfinite(wait) and 0 <= wait <= MAX_WAIT_S else None


async def _wait_for(
    read: Callable[[], SagaState | None], wait: float, stopping: Callable[[], bool]
) -> tuple[SagaState | None, bool]:
    """Read until the saga has ended or ``wait`` seconds have passed; True too if the worker began to stop.

    A stopping worker no longer moves sagas, and its web server waits for open requests (aiohttp
    gives them 60 s): a wait cut short by shutdown must answer at once.
    """
    deadline = time.monotonic() + wait
    while True:
        state = read()
        if (state is not None and state.is_terminal) or time.monotonic() >= deadline:
            return state, False
        if stopping():
            return state, True
        await asyncio.sleep(POLL_S)


def register(
    app: AppT, tables: dict[str, TableT], topics: Topics, is_ready: Callable[[], bool], partitions: int,
    web_token: str = "",
) -> None:
    """Add the contract's views to the app; Faust's own pages are off (``app.faust_app.Web``)."""

    def owned(table: TableT, match_info: str) -> Callable[[View], View]:
        """Serve a view on the worker that owns the key; 503 while this worker is not ready."""

        def decorate(fun: View) -> View:
            routed = app.table_route(table=table, match_info=match_info)(fun)

            @wraps(fun)
            async def view(self: web.View, request: web.Request, **kwargs: Any) -> web.Response:
                if not is_ready():
                    return _json(self, {"error": "worker is starting or rebalancing, retry shortly"}, status=503)
                # the owner may have just died or stopped answering: its partitions move once the group notices
                limit = ROUTE_TIMEOUT_S + (parse_wait(request.query.get("wait")) or 0.0)
                try:
                    return await asyncio.wait_for(routed(self, request, **kwargs), limit)
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    return _json(self, {"error": f"the worker that owns this key did not answer "
                                                 f"({type(exc).__name__}); retry shortly"}, status=503)

            return view

        return decorate

    sagas, stock, wallets, customers = tables[SAGAS], tables[STOCK], tables[WALLETS], tables[CUSTOMERS]

    @app.page("/livez")
    class Live(web.View):
        """200 while the process answers; for liveness probes."""

        async def get(self, request: web.Request) -> web.Response:
            """Alive."""
            return _json(self, {"live": True})

    @app.page("/readyz")
    class Ready(web.View):
        """200 once tables are recovered and partitions assigned, 503 before; for load balancers."""

        async def get(self, request: web.Request) -> web.Response:
            """Readiness of this worker."""
            ready = is_ready()
            return _json(self, {"ready": ready}, status=200 if ready else 503)

    @app.page("/health")
    class Health(Ready):
        """The same as ``/readyz``."""

    stats = Stats(app, tables[STATS], partitions, web_token)
    dashboard = DASHBOARD.read_bytes()

    @app.page("/dashboard")
    class Dashboard(web.View):
        """The page for people: it draws what ``/stats`` and ``/metrics`` say, and loads nothing from elsewhere."""

        async def get(self, request: web.Request) -> web.Response:
            """The HTML page; its policy forbids the browser to fetch from any other origin."""
            return self.bytes(dashboard, content_type="text/html", headers={"Content-Security-Policy": CSP})

    @app.page("/stats")
    class StatsView(web.View):
        """Windowed counts for the whole system, newest window first."""

        async def get(self, request: web.Request) -> web.Response:
            """``?window=1m|5m``; workers ask each other with ``?scope=local`` for their own buckets."""
            window, scope = request.query.get("window", "1m"), request.query.get("scope")
            errors = [f"window must be one of {', '.join(WINDOWS)}"] if window not in WINDOWS else []
            if scope not in (None, "local"):
                errors.append("scope must be local (how workers ask each other) or left out")
            if errors:
                return _json(self, {"errors": errors}, status=400)
            if not is_ready():
                return _json(self, {"error": "worker is starting or rebalancing, retry shortly"}, status=503)
            if scope == "local":
                return _json(self, stats.local())
            try:
                buckets = await stats.everywhere(window)
            except StatsUnavailable as exc:
                return _json(self, {"error": str(exc)}, status=503)
            return _json(self, {"window": window, "windows": window_views(window, buckets, utc_now())})

    @app.page("/orders")
    class Orders(web.View):
        """Order intake: validate, write ``OrderPlaced``, answer 202 with where to look."""

        async def post(self, request: web.Request) -> web.Response:
            """Place an order; a bad body gets every error and writes nothing."""
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                return _json(self, {"errors": ["body is not JSON"]}, status=400)
            order = order_from_request(body, utc_now())
            if isinstance(order, list):
                return _json(self, {"errors": order}, status=400)
            await topics.public[ORDER_EVENTS].send(
                key=order.order_id.encode(), value=order.encode(), headers=order.headers()
            )
            location = f"/orders/{order.order_id}"
            return _json(self, {"order_id": order.order_id, "location": location}, status=202)

    def saga_of(order_id: str) -> SagaState | None:
        raw = sagas.get(order_id)
        return SagaState.from_json(raw) if raw is not None else None

    @app.page("/orders/{order_id}")
    class Order(web.View):
        """One order's saga; ``?wait=SECONDS`` holds the answer until the saga ends."""

        @owned(sagas, "order_id")
        async def get(self, request: web.Request, order_id: str) -> web.Response:
            """The saga's status, step, steps and reason."""
            wait = parse_wait(request.query.get("wait"))
            if wait is None:
                return _json(self, {"errors": [f"wait must be a number of seconds from 0 to {MAX_WAIT_S:.0f}"]},
                             status=400)
            state, cut_short = await _wait_for(lambda: saga_of(order_id), wait, lambda: app.should_stop)
            if cut_short:
                return _json(self, {"error": "worker is stopping, retry shortly"}, status=503)
            if state is None:
                return _not_found(self, "order", order_id)
            return _json(self, state.view())

    @app.page("/inventory/{sku}")
    class Inventory(web.View):
        """One sku's stock."""

        @owned(stock, "sku")
        async def get(self, request: web.Request, sku: str) -> web.Response:
            """Available and reserved units."""
            return _stored(self, _head(stock, sku), "sku", sku, lambda raw: Stock.from_json(raw).view())

    @app.page("/wallets/{customer_id}")
    class Wallets(web.View):
        """One customer's wallet."""

        @owned(wallets, "customer_id")
        async def get(self, request: web.Request, customer_id: str) -> web.Response:
            """The balance as a decimal string."""
            return _stored(self, _head(wallets, customer_id), "wallet", customer_id,
                           lambda raw: Wallet.from_json(raw).view())

    @app.page("/customers/{customer_id}")
    class Customers(web.View):
        """One registered customer."""

        @owned(customers, "customer_id")
        async def get(self, request: web.Request, customer_id: str) -> web.Response:
            """Name and email."""
            return _stored(self, customers.get(customer_id), "customer", customer_id, orjson.loads)
