"""The composition root builds the whole worker from the settings, and importing patches nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as faust_aiokafka

from app.composition import build
from app.topic_names import all_topic_names, changelog_names
from app.transactions import WorkerTransactionManager
from config.settings import Settings
from models.handlers import TABLES

SETTINGS = Settings(app_id="shop", topic_prefix="t1.")


def test_every_table_and_its_changelog_is_named_as_the_admin_client_creates_them() -> None:
    """ensure_topics creates changelogs by name; a table added without its name would race again."""
    app = build(SETTINGS)
    assert set(app.tables) == set(TABLES)
    names = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    assert names == set(changelog_names(SETTINGS))
    assert all(name.startswith("t1.shop-") for name in names), "the topic prefix covers changelogs too"


def test_every_topic_the_app_reads_or_writes_is_one_the_admin_client_creates() -> None:
    app = build(SETTINGS)
    declared = {name for topic in app.topics for name in topic.topics}
    created = set(all_topic_names(SETTINGS)) | set(changelog_names(SETTINGS))
    assert declared <= created, sorted(declared - created)
    assert all(name.startswith("t1.") for name in created)


def test_the_agents_the_timer_and_the_start_up_tasks_are_registered() -> None:
    app = build(SETTINGS)
    assert set(app.agents) == {
        "ingress.order-events", "ingress.inventory-events", "ingress.payment-events", "ingress.user-events",
        "saga", "stock", "wallet", "customers",
    }
    started = {task.__name__ for task in app._app_tasks}
    assert started == {"expire_sagas", "learn_table_topics", "restore_root_log_level", "read_broker_gauges"}


def test_the_exactly_once_transaction_manager_comes_with_the_app_not_with_an_import() -> None:
    """Building the app installs nothing globally: Faust's own transport keeps its own manager."""
    app = build(Settings(processing_guarantee="exactly_once"))
    assert app.transport.TransactionManager is WorkerTransactionManager
    assert faust_aiokafka.Transport.TransactionManager is TransactionManager


def test_faust_s_own_pages_are_not_served() -> None:
    app = build(SETTINGS)
    assert list(app.web.blueprints._enabled) == []
    paths = {view.view_path for view in app.web.views.values()}
    assert paths == {"/livez", "/readyz", "/health", "/stats", "/metrics", "/dashboard", "/orders",
                     "/orders/{order_id}", "/inventory/{sku}", "/wallets/{customer_id}", "/customers/{customer_id}"}


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_producer_is_found_without_a_turn_of_the_event_loop(tmp_path: Path, guarantee: str) -> None:
    """Faust asks for it at every send; its stampede guard yielded three times each (24 loop turns a saga)."""
    app = build(Settings(data_dir=tmp_path, processing_guarantee=guarantee))
    app.in_worker = True  # as in ``streamsaga worker``: under exactly_once Faust sends in transactions then
    app.producer._started.set()  # and the worker has started its producer
    asking = app.maybe_start_producer()
    with pytest.raises(StopIteration) as found:
        asking.send(None)  # runs to the end at once: no await suspended it
    expected = app.consumer.transactions if guarantee == "exactly_once" else app.producer
    assert found.value.value is expected
