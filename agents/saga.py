"""The saga agent: the only writer of saga state, fed by orders and replies by order id."""

from __future__ import annotations

import logging

from faust.types import StreamT

from agents.outputs import send_all
from agents.owner_loop import own_keys
from app.faust_app import app, policy, settings
from app.topics import internal
from models import commands
from models.commands import Message, SagaTimeout
from models.events import parse_time, utc_now
from models.handlers import Handled, saga_step
from models.saga import SagaState
from tables.state import saga_deadlines, sagas

log = logging.getLogger(__name__)


def _step(order_id: str, stored: bytes | None, message: Message) -> Handled:
    """The saga handler at the current time; keeps the deadline index beside the saga."""
    new_stored, outputs, state = saga_step(stored, message, utc_now(), policy)
    if state is not None:
        _track_deadline(order_id, state)
    return new_stored, outputs


def _track_deadline(order_id: str, state: SagaState) -> None:
    """Index sagas in progress by deadline; a redelivery repairs the index as it goes."""
    if state.is_terminal:
        if saga_deadlines.get(order_id) is not None:
            del saga_deadlines[order_id]
    elif saga_deadlines.get(order_id) != state.deadline.encode():
        saga_deadlines[order_id] = state.deadline.encode()


@app.agent(internal[commands.SAGA], name="saga")
async def saga_agent(stream: StreamT) -> None:
    """Run every order's saga on the worker that owns its order id."""
    await own_keys(stream, sagas, _step)


@app.timer(interval=settings.timeout_check_interval_s)
async def expire_sagas() -> None:
    """Tell the saga agent about sagas past their deadline, on the partitions this worker owns."""
    now = utc_now()
    expired = [
        key.decode() for key, deadline in list(saga_deadlines.items())
        if deadline is not None and parse_time(deadline.decode()) <= now
    ]
    if expired:
        log.info("%d sagas passed their deadline", len(expired))
        await send_all([SagaTimeout(order_id=order_id) for order_id in expired])
