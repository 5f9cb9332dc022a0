"""When a worker may answer table views: its producer knows the changelog topics and recovery is done."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from faust.types import AppT

log = logging.getLogger(__name__)


def register(app: AppT) -> Callable[[], bool]:
    """Start learning the table topics when the worker starts; return the readiness check."""
    metadata_known = False

    @app.task
    async def learn_table_topics() -> None:
        """Fetch partition metadata of every changelog topic, which routing views by key needs."""
        nonlocal metadata_known
        transport: Any = app.producer
        producer = transport._ensure_producer()  # faust exposes no public hook for this
        for table in app.tables.values():
            await producer.partitions_for(table.changelog_topic.get_topic_name())
        metadata_known = True
        log.info("table topics known; views can route by key")

    def is_ready() -> bool:
        """True once routing by key works and the tables this worker owns are recovered."""
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # the interface omits it
        return metadata_known and recovery.completed.is_set() and not app.rebalancing

    return is_ready
