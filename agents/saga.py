"""The saga agent: the only writer of saga state, fed by orders and replies by order id."""

from __future__ import annotations

from faust.types import StreamT

from agents.owner_loop import own_keys
from app.faust_app import app, policy
from app.topics import internal
from models import commands
from models.commands import Message
from models.events import utc_now
from models.saga import SagaState, transition
from tables.state import sagas


def saga_step(order_id: str, stored: bytes | None, message: Message) -> tuple[bytes | None, list[Message]]:
    """Load the saga, run the pure transition, hand back what changed."""
    state = SagaState.from_json(stored) if stored is not None else None
    new_state, outputs = transition(state, message, utc_now(), policy)
    changed = new_state is not None and new_state is not state
    return (new_state.to_json() if changed and new_state is not None else None), outputs


@app.agent(internal[commands.SAGA], name="saga")
async def saga_agent(stream: StreamT) -> None:
    """Run every order's saga on the worker that owns its order id."""
    await own_keys(stream, sagas, saga_step)
