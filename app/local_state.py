"""Local table state that a crash under exactly_once may have left ahead of the committed changelog.

Faust writes table changes to RocksDB as it goes; with Kafka transactions the matching changelog
records are aborted when the worker dies, so after a kill the local store can hold changes that
never happened. Kafka Streams wipes such state after an unclean shutdown; so do we: the tables
are rebuilt from the committed changelogs.
"""

from __future__ import annotations

import atexit
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)
CLEAN_MARKER = ".clean-shutdown"


def prepare_table_state(tables_dir: Path, exactly_once: bool) -> None:
    """Create the directory; under exactly_once drop it first if the last run did not stop cleanly."""
    marker = tables_dir / CLEAN_MARKER
    if exactly_once and tables_dir.exists() and any(tables_dir.iterdir()) and not marker.exists():
        log.warning("last worker run did not stop cleanly; rebuilding tables from committed changelogs")
        print(f"[streamsaga] unclean shutdown under exactly_once: wiping {tables_dir}", flush=True)
        shutil.rmtree(tables_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    atexit.register(_mark_clean, marker)


#: set once this run's tables hold changes whose transaction was aborted
_distrusted = False


def distrust_table_state() -> None:
    """This run's tables hold aborted changes (the worker was fenced): its stop, however orderly, is not clean."""
    global _distrusted
    _distrusted = True


def _mark_clean(marker: Path) -> None:
    """At exit: the next run may keep the tables, unless this run distrusted them."""
    if not _distrusted:
        marker.touch()
