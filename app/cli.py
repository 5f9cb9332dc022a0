"""The ``streamsaga`` command: Faust's worker and tools, plus our operator commands (``app.ops``)."""

from __future__ import annotations

import asyncio
import sys

from app.kafka_clients import BrokersUnusable, check_brokers
from app.local_state import prepare_table_state
from app.ops import cli as ops
from config.settings import Settings, SettingsError


def main() -> None:
    """Entry point of the console script."""
    command = sys.argv[1] if len(sys.argv) > 1 else "--help"
    if command in (*ops.COMMANDS, "-h", "--help"):
        sys.exit(ops.run(sys.argv[1:] or ["--help"]))
    from app.composition import build  # here: the operator commands do not need Faust loaded

    try:
        settings = Settings.from_env()
        if command == "worker":
            asyncio.run(check_brokers(settings))
    except (SettingsError, BrokersUnusable) as exc:
        what = "cannot use the Kafka brokers: " if isinstance(exc, BrokersUnusable) else ""
        print(f"streamsaga {command}: error: {what}{exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    if command == "worker":
        prepare_table_state(settings.data_dir / "worker", settings.processing_guarantee == "exactly_once")
    build(settings).main()


if __name__ == "__main__":
    main()
