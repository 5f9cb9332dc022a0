"""The windows of ``GET /stats``: Faust's tumbling 1-minute and hopping 5-minute (by 1 minute) windows.

Both are sums of the one-minute buckets of the stats table (``models/stats.py``): a bucket adds to
every window Faust's window type puts its minute in, so a 5-minute window holds exactly the
orders of its five minutes, however many partitions and workers counted them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from faust.windows import HoppingWindow, TumblingWindow

from models.stats import BUCKET, RETENTION, Bucket, minute_of

STEP_S = int(BUCKET.total_seconds())
WINDOWS = {"1m": TumblingWindow(STEP_S), "5m": HoppingWindow(5 * STEP_S, STEP_S)}
#: windows shown, newest first; the buckets kept cover this many of either size
SHOWN = 60
assert RETENTION >= (SHOWN + 4) * BUCKET, "the oldest 5-minute window needs the 4 minutes before it"


def window_views(name: str, buckets: Mapping[int, Bucket], now: datetime) -> list[dict[str, Any]]:
    """The ``SHOWN`` windows of type ``name`` ending at each minute, newest first.

    The newest ends with the current minute, or with the newest bucket if its events come from
    a clock ahead of ours.
    """
    window = WINDOWS[name]
    size = int(window.size)
    sums: dict[int, Bucket] = defaultdict(Bucket)
    for minute, bucket in buckets.items():
        for start, _ in window.ranges(minute):
            sums[int(start)] += bucket
    newest_end = max([minute_of(now), *buckets]) + STEP_S
    views = []
    for n in range(SHOWN):
        start = newest_end - n * STEP_S - size
        views.append(sums.get(start, Bucket()).view(_at(start), _at(start + size)))
    return views


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
