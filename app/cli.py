"""The ``streamsaga`` command: Faust's worker and tools, plus our own commands."""

from __future__ import annotations

import sys

from app.composition import build
from app.local_state import prepare_table_state
from config.settings import Settings


def main() -> None:
    """Entry point of the console script."""
    settings = Settings.from_env()
    if sys.argv[1:2] == ["worker"]:
        prepare_table_state(settings.data_dir / "worker", settings.processing_guarantee == "exactly_once")
    build(settings).main()


if __name__ == "__main__":
    main()
