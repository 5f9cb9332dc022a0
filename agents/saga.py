"""The saga agent, the only writer of saga state, and the timer that tells it about missed deadlines."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from faust.types import AppT, StreamT, TableT

from agents.executor import Executor
from agents.faust_io import consume
from app.topics import Topics
from models import commands, handlers
from models.effects import Effects
from models.events import format_time, utc_now
from models.saga import SagaPolicy
from tables.due_index import due_keys

log = logging.getLogger(__name__)


def register(
    app: AppT, topics: Topics, executor: Executor, deadlines: TableT, expiry: TableT, policy: SagaPolicy,
    exactly_once: bool, check_interval_s: float, measure: bool,
) -> None:
    """The saga agent on the internal replies topic, and the timer of this worker: timeouts and retention."""

    @app.agent(topics.internal[commands.SAGA], name="saga")
    async def saga_agent(stream: StreamT) -> None:
        """Run every order's saga on the worker that owns its order id."""
        await consume(stream, executor, handlers.saga(policy, exactly_once, measure), enveloped=True)

    timer = executor.for_loop()
    told: dict[str, datetime] = {}  # this process's memory: a restarted worker tells again at once
    told_forget: dict[str, datetime] = {}
    interval = timedelta(seconds=check_interval_s)

    @app.timer(interval=check_interval_s)
    async def expire_sagas() -> None:
        """Tell the saga agent about sagas past their deadline, and finished ones past their retention, on the
        partitions this worker owns."""
        nonlocal told, told_forget
        now = utc_now()
        effects, told = handlers.timeouts_due(list(deadlines.items()), now, told, interval)
        forgets, told_forget = handlers.forgets_due(due_keys(expiry, format_time(now)), now, told_forget, interval)
        if effects.sends:
            log.info("%d sagas passed their deadline", len(effects.sends))
        if forgets.sends:
            log.info("%d finished sagas passed their retention", len(forgets.sends))
        if effects.sends or forgets.sends:
            await timer.apply(Effects(sends=effects.sends + forgets.sends))
            await timer.flush()
