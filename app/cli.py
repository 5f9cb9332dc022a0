"""The ``streamsaga`` command: Faust's worker and tools, plus our operator commands (``app.ops``)."""

from __future__ import annotations

import sys

from app.local_state import prepare_table_state
from app.ops import cli as ops
from config.settings import Settings


def main() -> None:
    """Entry point of the console script."""
    command = sys.argv[1] if len(sys.argv) > 1 else "--help"
    if command in (*ops.COMMANDS, "-h", "--help"):
        sys.exit(ops.run(sys.argv[1:] or ["--help"]))
    from app.composition import build  # here: the operator commands do not need Faust loaded

    settings = Settings.from_env()
    if command == "worker":
        prepare_table_state(settings.data_dir / "worker", settings.processing_guarantee == "exactly_once")
    build(settings).main()


if __name__ == "__main__":
    main()
