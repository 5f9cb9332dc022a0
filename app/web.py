"""JSON views of the tables, each routed to the worker that owns the key, and order intake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import orjson
from faust import web

from app.faust_app import app
from app.readiness import is_ready
from app.topics import public
from models.events import utc_now
from models.order_request import order_from_request
from models.saga import SagaState
from models.stock import Stock
from models.topics import ORDER_EVENTS
from models.wallet import Wallet
from tables.state import customers, sagas, stock, wallets

MAX_WAIT_S = 60.0
POLL_S = 0.05


def _json(view: web.View, body: Any, status: int = 200) -> web.Response:
    """A JSON response written with orjson."""
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status)


def _not_found(view: web.View, what: str, key: str) -> web.Response:
    """The contract's 404 for an unknown key."""
    return _json(view, {"error": f"{what} {key!r} not found"}, status=404)


def _stored(view: web.View, raw: bytes | None, what: str, key: str, render: Callable[[bytes], Any]) -> web.Response:
    """A table value rendered as JSON, or the contract's 404."""
    return _not_found(view, what, key) if raw is None else _json(view, render(raw))


View = Callable[..., Awaitable[web.Response]]


def owned(table: Any, match_info: str) -> Callable[[View], View]:
    """Serve a view on the worker that owns the key; 503 while this worker is not ready."""

    def decorate(fun: View) -> View:
        routed = app.table_route(table=table, match_info=match_info)(fun)

        @wraps(fun)
        async def view(self: web.View, request: web.Request, **kwargs: Any) -> web.Response:
            if not is_ready():
                return _json(self, {"error": "worker is starting or rebalancing, retry shortly"}, status=503)
            return await routed(self, request, **kwargs)

        return view

    return decorate


@app.page("/health")
class Health(web.View):
    """200 once this worker can serve views, 503 before; for load balancers and tests."""

    async def get(self, request: web.Request) -> web.Response:
        """Readiness of this worker."""
        ready = is_ready()
        return _json(self, {"ready": ready}, status=200 if ready else 503)


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
        await public[ORDER_EVENTS].send(
            key=order.order_id.encode(), value=order.encode(), headers=order.headers()
        )
        location = f"/orders/{order.order_id}"
        return _json(self, {"order_id": order.order_id, "location": location}, status=202)


@app.page("/orders/{order_id}")
class Order(web.View):
    """One order's saga; ``?wait=SECONDS`` holds the answer until the saga ends."""

    @owned(sagas, "order_id")
    async def get(self, request: web.Request, order_id: str) -> web.Response:
        """The saga's status, step, steps and reason."""
        try:
            wait = min(float(request.query.get("wait", "0")), MAX_WAIT_S)
        except ValueError:
            return _json(self, {"errors": ["wait must be a number of seconds"]}, status=400)
        state = await _wait_for(lambda: _saga(order_id), wait)
        if state is None:
            return _not_found(self, "order", order_id)
        return _json(self, state.view())


def _saga(order_id: str) -> SagaState | None:
    """The saga as stored, or None."""
    raw = sagas.get(order_id)
    return SagaState.from_json(raw) if raw is not None else None


async def _wait_for(read: Callable[[], SagaState | None], wait: float) -> SagaState | None:
    """Read until the saga has ended or ``wait`` seconds have passed."""
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        state = read()
        if (state is not None and state.is_terminal) or time.monotonic() >= deadline:
            return state
        await asyncio.sleep(POLL_S)


@app.page("/inventory/{sku}")
class Inventory(web.View):
    """One sku's stock."""

    @owned(stock, "sku")
    async def get(self, request: web.Request, sku: str) -> web.Response:
        """Available and reserved units."""
        return _stored(self, stock.get(sku), "sku", sku, lambda raw: Stock.from_json(raw).view())


@app.page("/wallets/{customer_id}")
class Wallets(web.View):
    """One customer's wallet."""

    @owned(wallets, "customer_id")
    async def get(self, request: web.Request, customer_id: str) -> web.Response:
        """The balance as a decimal string."""
        return _stored(self, wallets.get(customer_id), "wallet", customer_id, lambda raw: Wallet.from_json(raw).view())


@app.page("/customers/{customer_id}")
class Customers(web.View):
    """One registered customer."""

    @owned(customers, "customer_id")
    async def get(self, request: web.Request, customer_id: str) -> web.Response:
        """Name and email."""
        return _stored(self, customers.get(customer_id), "customer", customer_id, orjson.loads)
