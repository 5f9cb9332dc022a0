"""Our own ``streamsaga`` subcommands, beside Faust's."""

from __future__ import annotations

from faust.types import AppT

from app.admin import ensure_topics
from config.settings import Settings


def register(app: AppT, settings: Settings) -> None:
    """Add the subcommands to the app's command line."""

    @app.command()
    async def create_topics() -> None:
        """Create every topic the app needs (public, internal, dead letters, changelogs) if missing."""
        created = await ensure_topics(settings)
        print(f"created {len(created)} topics" + (": " + ", ".join(created) if created else ""))
