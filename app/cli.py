"""The ``streamsaga`` command: Faust's worker and tools, plus our own commands."""

from __future__ import annotations

import sys

import agents.customers  # noqa: F401 - registers the agent
import agents.ingress  # noqa: F401
import agents.saga  # noqa: F401
import agents.stock  # noqa: F401
import agents.wallet  # noqa: F401
from app import log_level, readiness, web  # noqa: F401 - register the start-up tasks and the views
from app.admin import ensure_topics
from app.demo import produce, seed_events
from app.faust_app import app, settings
from app.local_state import prepare_table_state
from app.transactions import install as install_transactions

install_transactions()


@app.command()
async def create_topics() -> None:
    """Create every topic the app needs (public, internal, dead letters) if missing."""
    created = await ensure_topics(settings)
    print(f"created {len(created)} topics" + (": " + ", ".join(created) if created else ""))


@app.command()
async def seed() -> None:
    """Write demo customers, wallets and stock to the public topics."""
    await ensure_topics(settings)
    count = await produce(settings, seed_events())
    print(f"wrote {count} demo events")


def main() -> None:
    """Entry point of the console script."""
    if sys.argv[1:2] == ["worker"]:
        prepare_table_state(settings.data_dir / "worker", settings.processing_guarantee == "exactly_once")
    app.main()


if __name__ == "__main__":
    main()
