"""Keep debug logging off when the worker runs quieter than info.

Below ``-l info`` Faust sets the root logger to DEBUG for its start-up spinner and leaves it
there, so every ``log.debug`` in aiokafka and Faust builds a record the handlers then drop:
about 7% of a busy worker's time in a profile. Once started, the root level goes back to the
level the handlers were given.
"""

from __future__ import annotations

import logging

from faust.types import AppT


def register(app: AppT) -> None:
    """Restore the root log level once the worker has started."""

    @app.task
    async def restore_root_log_level() -> None:
        """Set the root logger to the most verbose level any of its handlers keeps."""
        root = logging.getLogger()
        levels = [h.level for h in root.handlers
                  if h.level > logging.NOTSET and type(h).__name__ != "SpinnerHandler"]
        if levels and root.level < min(levels):
            root.setLevel(min(levels))
