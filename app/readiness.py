"""When a worker may answer table views: its producer knows the changelog topics and recovery is done."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.faust_app import app

log = logging.getLogger(__name__)
_metadata_known = asyncio.Event()


def is_ready() -> bool:
    """True once routing by key works and the tables this worker owns are recovered."""
    recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # the interface omits it
    return _metadata_known.is_set() and recovery.completed.is_set() and not app.rebalancing


@app.task
async def learn_table_topics() -> None:
    """Fetch partition metadata of every changelog topic, which routing views by key needs."""
    transport: Any = app.producer
    producer = transport._ensure_producer()  # faust exposes no public hook for this
    for table in app.tables.values():
        await producer.partitions_for(table.changelog_topic.get_topic_name())
    _metadata_known.set()
    log.info("table topics known; views can route by key")
