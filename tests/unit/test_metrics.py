"""The executor's observer counts sagas, durations, compensations, retries and dead letters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from prometheus_client import CollectorRegistry

from app.metrics import SagaMetrics
from models.commands import ReleaseStock
from models.effects import Effects, Send
from models.measures import Ended, Placed

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_measures_and_compensating_sends_become_counters_and_a_histogram() -> None:
    registry = CollectorRegistry()
    metrics = SagaMetrics(registry)
    metrics.applied(Effects(measures=(Placed(NOW), Placed(NOW))))
    ended = Ended(NOW, "FAILED", "OUT_OF_STOCK", Decimal("1.00"), timedelta(milliseconds=1500))
    release = Send("stock-commands", "A", ReleaseStock(order_id="o", sku="A"))
    metrics.applied(Effects(sends=(release,), measures=(ended,)))
    metrics.applied(Effects(measures=(Ended(NOW, "COMPLETED", None, Decimal("2.00"), timedelta(seconds=20)),)))
    metrics.retried("t")
    metrics.dead_lettered("t", "BadMessage")

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("streamsaga_sagas_started_total") == 2
    assert sample("streamsaga_sagas_ended_total", status="FAILED", reason="OUT_OF_STOCK") == 1
    assert sample("streamsaga_sagas_ended_total", status="COMPLETED", reason="none") == 1
    assert sample("streamsaga_saga_duration_seconds_count") == 2
    assert sample("streamsaga_saga_duration_seconds_bucket", le="1.0") == 0
    assert sample("streamsaga_saga_duration_seconds_bucket", le="2.0") == 1
    assert sample("streamsaga_saga_duration_seconds_sum") == 21.5
    assert sample("streamsaga_compensations_total", action="release_stock") == 1
    assert sample("streamsaga_retries_total", topic="t") == 1
    assert sample("streamsaga_dead_letters_total", topic="t", reason="BadMessage") == 1
