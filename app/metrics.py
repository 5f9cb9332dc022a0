"""``GET /metrics``: ours, and Faust's own sensors when turned on, in Prometheus' text format, one registry per worker.

Ours come from three places: the executor tells :class:`SagaMetrics` what it applied, retried and
dead-lettered; the outbox counts every record the agents send and every send that fails;
and a timer reads from the broker what only the broker knows: consumer lag of this worker's
partitions, the end offsets of the dead-letter topics and the cluster's under-replicated
partitions. The alerting rules on these names are in ``config/prometheus/alerts.yml``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust import web
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import AppT
from mode.types.signals import BaseSignalT
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app.kafka_clients import client_options
from app.topic_names import input_topic_names
from config.settings import Settings
from models.commands import RefundWallet, ReleaseStock
from models.effects import Effects
from models.events import CustomerNotified, OrderCancelled, PaymentRefunded
from models.measures import Ended, Placed
from models.stats import DURATION_BOUNDS_MS, duration_ms
from models.topics import dead_letter_name

log = logging.getLogger(__name__)

#: the compensating messages, by the action they take
COMPENSATIONS = {
    RefundWallet: "refund", PaymentRefunded: "refund", ReleaseStock: "release_stock",
    OrderCancelled: "cancel_order", CustomerNotified: "notify_customer",
}


class SagaMetrics:
    """The executor's observer: sagas started and ended, durations, compensations, retries, dead letters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.started = Counter("streamsaga_sagas_started_total", "Sagas started (orders placed).",
                               registry=registry)
        self.ended = Counter("streamsaga_sagas_ended_total", "Sagas ended, by final status and reason.",
                             ["status", "reason"], registry=registry)
        self.duration = Histogram("streamsaga_saga_duration_seconds", "From a saga's start to its end.",
                                  buckets=[bound / 1000 for bound in DURATION_BOUNDS_MS], registry=registry)
        self.compensations = Counter("streamsaga_compensations_total",
                                     "Compensating messages sent (refund, release_stock, cancel_order, "
                                     "notify_customer).", ["action"], registry=registry)
        self.retries = Counter("streamsaga_retries_total", "Attempts repeated after a failure, by input topic.",
                               ["topic"], registry=registry)
        self.dead_letters = Counter("streamsaga_dead_letters_total",
                                    "Records dead-lettered, by input topic and failure class.",
                                    ["topic", "reason"], registry=registry)

    def applied(self, effects: Effects) -> None:
        """Count what a handled message newly did."""
        for measure in effects.measures:
            if isinstance(measure, Placed):
                self.started.inc()
            elif isinstance(measure, Ended):
                self.ended.labels(measure.status, measure.reason or "none").inc()
                self.duration.observe(duration_ms(measure.duration) / 1000)
        for send in effects.sends:
            action = COMPENSATIONS.get(type(send.message))
            if action is not None:
                self.compensations.labels(action).inc()

    def retried(self, topic: str) -> None:
        """One more attempt at a record of ``topic``."""
        self.retries.labels(topic).inc()

    def dead_lettered(self, topic: str, failure_class: str) -> None:
        """A record of ``topic`` went to its dead-letter topic."""
        self.dead_letters.labels(topic, failure_class).inc()


class SendCounts:
    """Every record the agents hand to the producer (events, commands, dead letters), and each failed send.

    Counted on the send's own future rather than with a Faust sensor, so the count does not depend on
    Faust's sensors, which are off unless ``STREAMSAGA_FAUST_SENSORS=1`` (they run on every record).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sends = Counter("streamsaga_producer_sends_total", "Records handed to the producer, by topic.",
                             ["topic"], registry=registry)
        self.errors = Counter("streamsaga_producer_send_errors_total", "Sends the broker refused, by topic.",
                              ["topic"], registry=registry)

    def track(self, topic: str, sent: asyncio.Future[Any]) -> None:
        """Count a send now, and its failure when the broker answers."""
        self.sends.labels(topic).inc()

        def answered(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is not None:
                self.errors.labels(topic).inc()

        sent.add_done_callback(answered)


class BrokerGauges:
    """What the broker knows, read on a timer: lag of this worker's partitions, dead-letter topics'
    end offsets, the cluster's under-replicated partitions."""

    def __init__(self, app: AppT, settings: Settings, registry: CollectorRegistry) -> None:
        self.app, self.settings = app, settings
        inputs = input_topic_names(settings)
        self.inputs = set(inputs)
        self.dead_letter_topics = [dead_letter_name(name) for name in inputs]
        self.lag = Gauge("streamsaga_consumer_lag_messages",
                         "Records not yet committed, of the partitions this worker owns: end offset (last stable "
                         "offset under exactly_once) minus the group's committed offset.",
                         ["topic", "partition"], registry=registry)
        self.dead_letter_end = Gauge("streamsaga_dead_letter_topic_end_offset",
                                     "End offset of each dead-letter topic: it grows with every dead letter "
                                     "(under exactly_once each transaction's commit marker takes an offset too).",
                                     ["topic"], registry=registry)
        self.under_replicated = Gauge("streamsaga_under_replicated_partitions",
                                      "Partitions in the cluster with fewer in-sync replicas than replicas.",
                                      registry=registry)
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def refresh(self) -> None:
        """Read lag, dead-letter end offsets and under-replicated partitions from the broker."""
        if self._consumer is None or self._admin is None:
            isolation = "read_committed" if self.settings.processing_guarantee == "exactly_once" else \
                "read_uncommitted"
            options = client_options(self.settings)
            self._consumer = AIOKafkaConsumer(**options,
                                              isolation_level=isolation)
            await self._consumer.start()
            self._admin = AIOKafkaAdminClient(**options)
            await self._admin.start()
        admin, consumer = self._admin, self._consumer
        described = await admin.describe_topics(await admin.list_topics())
        self.under_replicated.set(sum(
            len(partition["isr"]) < len(partition["replicas"])
            for topic in described for partition in topic["partitions"]
        ))
        letters = [TopicPartition(topic["topic"], partition["partition"]) for topic in described
                   if topic["topic"] in self.dead_letter_topics for partition in topic["partitions"]]
        owned = [TopicPartition(tp.topic, tp.partition) for tp in self.app.assignor.assigned_actives()
                 if tp.topic in self.inputs]
        ends = await consumer.end_offsets(letters + owned) if letters or owned else {}
        committed = await admin.list_consumer_group_offsets(self.settings.group_id, partitions=owned) \
            if owned else {}
        for topic in self.dead_letter_topics:
            self.dead_letter_end.labels(topic).set(sum(end for tp, end in ends.items() if tp.topic == topic))
        self.lag.clear()
        for tp in owned:
            done = committed.get(tp)
            self.lag.labels(tp.topic, str(tp.partition)).set(max(0, ends[tp] - (done.offset if done else 0)))

    async def close(self) -> None:
        """Close the probe's clients."""
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()


@dataclass(frozen=True)
class Metrics:
    """What the executor and the outbox report to."""

    saga: SagaMetrics
    sends: SendCounts


def register(app: AppT, settings: Settings) -> Metrics:
    """Our metrics (and Faust's sensors when ``faust_sensors``) on one registry, ``GET /metrics``, the broker timer."""
    registry = CollectorRegistry()
    if settings.faust_sensors:
        setup_prometheus_sensors(app, "/metrics", registry, name_prefix="faust")
    else:
        @app.page("/metrics")
        class MetricsView(web.View):
            """Prometheus text format."""

            async def get(self, request: web.Request) -> web.Response:
                """Every metric of this worker."""
                return self.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
    gauges = BrokerGauges(app, settings, registry)

    @app.timer(interval=settings.metrics_interval_s)
    async def read_broker_gauges() -> None:
        """Lag, dead-letter topics and replication, as the broker sees them."""
        try:
            await gauges.refresh()
        except Exception as exc:  # noqa: BLE001 - a metric read that fails must not stop the worker
            log.warning("could not read broker gauges: %s: %s", type(exc).__name__, exc)

    @app.on_before_shutdown.connect
    async def close_broker_clients(sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        """The timer's clients close with the worker."""
        await gauges.close()

    return Metrics(SagaMetrics(registry), SendCounts(registry))
