"""The one Faust app object, configured from :class:`config.settings.Settings`."""

from __future__ import annotations

from datetime import timedelta

import faust
from faust.stores import STORES

from config.settings import Settings
from models.saga import SagaPolicy

settings = Settings.from_env()
# Our RocksDB store, which rebuilds far-behind table partitions in bulk (tables/bulk_restore.py).
STORES.aliases["rocksdb-bulk"] = "tables.bulk_restore:Store"
policy = SagaPolicy(payment_mode=settings.payment_mode, timeout=timedelta(seconds=settings.saga_timeout_s))

app = faust.App(
    settings.app_id,
    broker=settings.broker,
    store="rocksdb-bulk://",
    datadir=str(settings.data_dir / "worker"),
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    processing_guarantee=settings.processing_guarantee,
    producer_acks=-1,
    producer_linger=settings.producer_linger_ms / 1000,
    broker_commit_interval=settings.commit_interval_s,
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
    web_host=settings.web_host,
    web_bind=settings.web_bind or settings.web_host,
    web_port=settings.web_port,
    web_enabled=True,
    consumer_auto_offset_reset="earliest",
)
