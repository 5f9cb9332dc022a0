"""The running worker driven from outside: HTTP views and a producer that partitions its own way."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from devtools.kafka_local import LocalKafka
from models import paged
from models.events import FundsAdded, OrderLine, OrderPlaced, StockAdded, UserRegistered, format_time, utc_now
from support.topics import read_topic, setup_topics, wait_quiet, wait_until, write_events, write_raw
from support.worker import Worker, new_settings

pytestmark = pytest.mark.e2e


def _ids() -> dict[str, str]:
    return {"event_id": str(uuid.uuid4()), "occurred_at": format_time(utc_now())}


@pytest.fixture(scope="module")
def running(kafka: LocalKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Worker]]:
    """One seeded worker for every test of this module."""
    tmp: Path = tmp_path_factory.mktemp("web")
    settings = new_settings(kafka.bootstrap, tmp, "web")
    setup_topics(settings)
    write_events(settings, [
        UserRegistered(**_ids(), customer_id="ann", name="Ann Åström", email="ann@example.com"),
        FundsAdded(**_ids(), customer_id="ann", amount=Decimal("100.00")),
        StockAdded(**_ids(), sku="SKU-W", quantity=10),
    ])
    worker = Worker(settings, tmp / "worker.log").start()
    try:
        wait_until(lambda: worker.get("/wallets/ann")[0] == 200 and worker.get("/inventory/SKU-W")[0] == 200,
                   60, "seed data")
        yield settings, worker
    finally:
        worker.stop()


def test_post_order_then_wait_for_its_outcome(running: tuple[Settings, Worker]) -> None:
    _, worker = running
    status, body = worker.post("/orders", orjson.dumps(
        {"customer_id": "ann", "items": [{"sku": "SKU-W", "quantity": 2, "unit_price": "4.50"}]}))
    assert status == 202
    assert body["location"] == f"/orders/{body['order_id']}"
    status, saga = worker.get(body["location"] + "?wait=20")
    assert status == 200
    assert saga["status"] == "COMPLETED" and saga["reason"] is None
    assert saga["steps"] == {"INVENTORY_RESERVATION": "COMPLETED", "PAYMENT_PROCESSING": "COMPLETED",
                             "ORDER_CONFIRMATION": "COMPLETED"}
    assert saga["started_at"] <= saga["updated_at"]
    wait_until(lambda: worker.get("/inventory/SKU-W")[1]["reserved"] == 0, 30, "the hold to be committed")
    assert worker.get("/inventory/SKU-W")[1] == {"sku": "SKU-W", "available": 8, "reserved": 0}
    assert worker.get("/wallets/ann")[1] == {"customer_id": "ann", "balance": "91.00"}
    assert worker.get("/customers/ann")[1] == {"customer_id": "ann", "name": "Ann Åström", "email": "ann@example.com"}


def test_post_with_chosen_order_id_out_of_stock(running: tuple[Settings, Worker]) -> None:
    _, worker = running
    lines = [{"sku": "SKU-W", "quantity": 999, "unit_price": "1.00"}]
    status, body = worker.post("/orders", orjson.dumps({"order_id": "web-oos", "customer_id": "ann", "items": lines}))
    assert (status, body["order_id"]) == (202, "web-oos")
    saga = worker.get("/orders/web-oos?wait=20")[1]
    assert (saga["status"], saga["step"], saga["reason"]) == ("FAILED", "INVENTORY_RESERVATION", "OUT_OF_STOCK")


def test_bad_bodies_get_every_error_and_write_nothing(kafka: LocalKafka, running: tuple[Settings, Worker]) -> None:
    settings, worker = running
    # the earlier tests' outcomes become visible with their transaction's commit: let them land first
    wait_quiet(kafka.bootstrap, [settings.topic("order-events")], 30, every=1.0)
    before = len(read_topic(kafka.bootstrap, settings.topic("order-events")))
    status, body = worker.post("/orders", b"{broken")
    assert (status, body) == (400, {"errors": ["body is not JSON"]})
    status, body = worker.post("/orders", orjson.dumps(
        {"customer_id": "", "items": [{"sku": "A", "quantity": 0, "unit_price": 2.5}, "x"]}))
    assert status == 400
    assert body["errors"] == [
        "customer_id must be a non-empty string of at most 200 characters, without NUL",
        "items[0].quantity must be an integer from 1 to 1000000",
        "items[0].unit_price must be a decimal string with at most two places, got 2.5",
        "items[1] must be an object with sku, quantity and unit_price",
    ]
    assert worker.post("/orders", orjson.dumps({"customer_id": "ann", "items": []}))[0] == 400
    assert worker.post("/orders", orjson.dumps([1]))[0] == 400
    assert len(read_topic(kafka.bootstrap, settings.topic("order-events"))) == before


@pytest.mark.parametrize("path", ["/orders/nope", "/inventory/nope", "/wallets/nope", "/customers/nope"])
def test_unknown_keys_are_404_with_an_error(running: tuple[Settings, Worker], path: str) -> None:
    status, body = running[1].get(path)
    assert status == 404 and "not found" in body["error"]


def test_a_page_of_a_sku_s_or_wallet_s_memory_is_no_sku_or_wallet(running: tuple[Settings, Worker]) -> None:
    _, worker = running
    for order_id in ("web-page-1", "web-page-2"):  # the second moves the first's entries to their pages
        lines = [{"sku": "SKU-W", "quantity": 1, "unit_price": "1.00"}]
        body = orjson.dumps({"order_id": order_id, "customer_id": "ann", "items": lines})
        assert worker.post("/orders", body)[0] == 202
        assert worker.get(f"/orders/{order_id}?wait=20")[1]["status"] == "COMPLETED"
    wait_until(lambda: worker.get("/inventory/SKU-W")[1]["reserved"] == 0, 30, "the holds to be committed")
    for view, key in (("inventory", "SKU-W"), ("wallets", "ann")):
        status, body = worker.get(f"/{view}/{quote(paged.page_key(key, 'web-page-1'))}")
        assert status == 404 and "not found" in body["error"]


@pytest.mark.parametrize("wait", ["soon", "nan", "inf", "-inf", "-1", "60.5", "1e400"])
def test_a_wait_that_is_not_a_number_of_seconds_from_0_to_60_is_400_at_once(
    running: tuple[Settings, Worker], wait: str
) -> None:
    status, body = running[1].get(f"/orders/x?wait={wait}", timeout=10)
    assert status == 400 and body == {"errors": ["wait must be a number of seconds from 0 to 60"]}


@pytest.mark.parametrize("path", ["/", "/router/", "/table/", "/table/wallets/", "/table/wallets/ann/", "/graph/",
                                  "/stats/", "/performance/", "/favicon.ico", "/orders/a/b"])
def test_only_the_contract_s_pages_are_served(running: tuple[Settings, Worker], path: str) -> None:
    """Faust's own pages (which dump raw table values) are off; every other path is a JSON 404."""
    status, body = running[1].get(path)
    assert (status, body) == (404, {"error": f"no such page: {path}"})


@pytest.mark.parametrize(("query", "errors"), [
    ("?window=10m", ["window must be one of 1m, 5m"]),
    ("?scope=everything", ["scope must be local (how workers ask each other) or left out"]),
    ("?window=&scope=x", ["window must be one of 1m, 5m",
                          "scope must be local (how workers ask each other) or left out"]),
])
def test_stats_with_a_bad_query_is_400_with_every_error(
    running: tuple[Settings, Worker], query: str, errors: list[str]
) -> None:
    assert running[1].get(f"/stats{query}") == (400, {"errors": errors})


def test_stats_defaults_to_one_minute_windows_newest_first(running: tuple[Settings, Worker]) -> None:
    status, body = running[1].get("/stats")
    assert status == 200 and body["window"] == "1m" and len(body["windows"]) == 60
    starts = [w["start"] for w in body["windows"]]
    assert starts == sorted(starts, reverse=True) and body["windows"][0]["end"] > body["windows"][0]["start"]


def test_metrics_are_served_in_prometheus_text_format_without_faust_s_sensors_by_default(
    running: tuple[Settings, Worker]
) -> None:
    with urllib.request.urlopen(f"{running[1].url}/metrics", timeout=10) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain; version=")
        names = {family.name for family in text_string_to_metric_families(response.read().decode())}
    assert {"streamsaga_sagas_started", "streamsaga_producer_sends", "streamsaga_consumer_lag_messages"} <= names
    assert not any(name.startswith("faust_") for name in names)


def test_liveness_and_readiness(running: tuple[Settings, Worker]) -> None:
    worker = running[1]
    assert worker.get("/livez") == (200, {"live": True})
    assert worker.get("/readyz") == (200, {"ready": True})
    assert worker.get("/health") == (200, {"ready": True})


def test_order_on_any_partition_reaches_its_saga(kafka: LocalKafka, running: tuple[Settings, Worker]) -> None:
    """A producer with another partitioner (kcat's default is CRC32) still gets one saga per order."""
    settings, worker = running
    order = OrderPlaced(**_ids(), order_id="web-any-partition", customer_id="ann",
                        items=(OrderLine(sku="SKU-W", quantity=1, unit_price=Decimal("1.00")),),
                        total_amount=Decimal("1.00"))
    for partition in range(settings.partitions):  # the same order on every partition: one effect
        write_raw(kafka.bootstrap, settings.topic("order-events"), [(order.order_id.encode(), order.encode())],
                  partition=partition)
    assert worker.get(f"/orders/{order.order_id}?wait=20")[1]["status"] == "COMPLETED"

    def charged() -> set[str]:  # the view shows the worker's tables, ahead of the transaction's commit
        return {r.body["event_id"] for r in read_topic(kafka.bootstrap, settings.topic("payment-events"))
                if r.body.get("event_type") == "PaymentProcessed" and r.body["order_id"] == order.order_id}

    wait_until(charged, 30, "the payment to be committed")
    wait_quiet(kafka.bootstrap, [settings.topic("order-events"), settings.topic("payment-events")], 30)
    assert len(charged()) == 1
