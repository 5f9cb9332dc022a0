"""The saga agent, the only writer of saga state, and the timer that tells it about missed deadlines."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from faust.types import AppT, StreamT, TableT

from agents.executor import Executor
from agents.faust_io import consume
from app.topics import Topics
from models import commands, handlers
from models.events import utc_now
from models.saga import SagaPolicy

log = logging.getLogger(__name__)


def register(
    app: AppT, topics: Topics, executor: Executor, deadlines: TableT, policy: SagaPolicy, exactly_once: bool,
    check_interval_s: float, measure: bool,
) -> None:
    """The saga agent on the internal replies topic, and the timeout timer of this worker."""

    @app.agent(topics.internal[commands.SAGA], name="saga")
    async def saga_agent(stream: StreamT) -> None:
        """Run every order's saga on the worker that owns its order id."""
        await consume(stream, executor, handlers.saga(policy, exactly_once, measure), enveloped=True)

    timer = executor.for_loop()
    told: dict[str, datetime] = {}  # this process's memory: a restarted worker tells again at once
    interval = timedelta(seconds=check_interval_s)

    @app.timer(interval=check_interval_s)
    async def expire_sagas() -> None:
        """Tell the saga agent about sagas past their deadline, on the partitions this worker owns."""
        effects, remembered = handlers.timeouts_due(list(deadlines.items()), utc_now(), told, interval)
        told.clear()
        told.update(remembered)
        if effects.sends:
            log.info("%d sagas passed their deadline", len(effects.sends))
            await timer.apply(effects)
            await timer.flush()
