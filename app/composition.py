"""The composition root: the one place that builds the worker from the settings.

``streamsaga worker``, the tests and the benchmark all get their app from :func:`build`: the Faust
app (with our transport and table store), the tables, the topics, the executor, the agents, the
timer, the web views and the start-up tasks. Nothing is installed by importing a module.
"""

from __future__ import annotations

from datetime import timedelta

from agents import customers, ingress, saga, stock, wallet
from agents.executor import Executor
from agents.faust_io import TopicOutbox
from agents.retry import Backoff
from app import log_level, metrics, readiness, web
from app.faust_app import App, create_app
from app.topic_names import full_name
from app.topics import declare_topics
from config.settings import Settings
from models.handlers import DEADLINES, EXPIRY, own_outputs
from models.saga import SagaPolicy
from models.topics import INPUT_TOPICS
from tables.state import declare_tables


def build(settings: Settings) -> App:
    """The whole worker, wired; ``app.main()`` runs Faust's command line on it."""
    app = create_app(settings)
    tables = declare_tables(app, settings)
    for table in tables.values():
        app.commit_gate.always(table.flush_changelog)  # type: ignore[attr-defined]  # tables.held_changelog's
    topics = declare_topics(app, settings)
    measured = metrics.register(app, settings)
    executor = Executor(tables, TopicOutbox(topics.by_name, measured.sends.track),
                        lambda name: full_name(settings, name), Backoff.from_settings(settings),
                        measure=settings.stats, observer=measured.saga,
                        internal={topic.get_topic_name(): settings.partitions for topic in topics.internal.values()},
                        local=app.local_delivery)
    policy = SagaPolicy(payment_mode=settings.payment_mode, timeout=timedelta(seconds=settings.saga_timeout_s),
                        retention=settings.saga_retention_time)
    exactly_once = settings.processing_guarantee == "exactly_once"
    ingress.register(app, topics, executor, settings.payment_mode, policy.retention)
    app.own_outputs.update({settings.topic(name): own_outputs(name, settings.payment_mode) for name in INPUT_TOPICS})
    saga.register(app, topics, executor, tables[DEADLINES], tables[EXPIRY], policy, exactly_once,
                  settings.timeout_check_interval_s, settings.stats)
    stock.register(app, topics, executor, exactly_once)
    wallet.register(app, topics, executor, exactly_once)
    customers.register(app, topics, executor)
    web.register(app, tables, topics, readiness.register(app), settings.partitions, settings.web_token)
    log_level.register(app)
    return app
