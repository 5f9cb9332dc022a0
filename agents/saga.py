"""The saga agent: the only writer of saga state, fed by orders and replies by order id."""

from __future__ import annotations

import logging
import time

from faust.types import StreamT

from agents.outputs import send_all
from agents.owner_loop import own_keys
from app.faust_app import app, policy, settings
from app.topics import internal
from models import commands
from models.commands import Message, SagaTimeout
from models.events import utc_now
from models.handlers import Handled, deadline_entry, overdue, saga_step
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
    """Keep the deadline index in step with the saga; a redelivery repairs it as it goes."""
    wanted = deadline_entry(state)
    if saga_deadlines.get(order_id) != wanted:
        if wanted is None:
            del saga_deadlines[order_id]
        else:
            saga_deadlines[order_id] = wanted


@app.agent(internal[commands.SAGA], name="saga")
async def saga_agent(stream: StreamT) -> None:
    """Run every order's saga on the worker that owns its order id."""
    await own_keys(stream, sagas, _step)


#: When each overdue saga was last told, so a lagging partition is not flooded with timeouts.
_told: dict[str, float] = {}
RETELL_AFTER_S = 10 * settings.timeout_check_interval_s


@app.timer(interval=settings.timeout_check_interval_s)
async def expire_sagas() -> None:
    """Tell the saga agent about sagas past their deadline, on the partitions this worker owns.

    Each is told again only if it is still overdue ``RETELL_AFTER_S`` later: the saga agent may
    simply be behind, and every telling of a timed-out saga re-sends its compensation.
    """
    now, clock = utc_now(), time.monotonic()
    due = [order_id for order_id in overdue(list(saga_deadlines.items()), now)
           if clock - _told.get(order_id, -RETELL_AFTER_S) >= RETELL_AFTER_S]
    for order_id in [o for o in _told if saga_deadlines.get(o) is None]:
        del _told[order_id]
    if due:
        log.info("%d sagas passed their deadline", len(due))
        _told.update(dict.fromkeys(due, clock))
        await send_all([SagaTimeout(order_id=order_id) for order_id in due])
