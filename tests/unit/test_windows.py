"""The windows of GET /stats from minute buckets: tumbling 1m, 5m hopping by 1m, newest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models import stats
from models.measures import Placed
from models.stats import Bucket
from tables.windows import SHOWN, window_views

NOW = datetime(2026, 1, 1, 12, 30, 20, tzinfo=UTC)
MINUTE = stats.minute_of(NOW)


def placed(n: int) -> Bucket:
    bucket = Bucket()
    for _ in range(n):
        bucket = stats.added(bucket, Placed(NOW))
    return bucket


BUCKETS = {MINUTE: placed(1), MINUTE - 60: placed(2), MINUTE - 240: placed(4), MINUTE - 300: placed(8)}


def test_one_minute_windows_are_the_buckets_newest_first() -> None:
    views = window_views("1m", BUCKETS, NOW)
    assert len(views) == SHOWN
    assert [w["placed"] for w in views[:7]] == [1, 2, 0, 0, 4, 8, 0]
    assert (views[0]["start"], views[0]["end"]) == ("2026-01-01T12:30:00Z", "2026-01-01T12:31:00Z")
    assert views[-1]["start"] == "2026-01-01T11:31:00Z"


def test_five_minute_windows_hop_by_a_minute_and_add_up_their_five_buckets() -> None:
    views = window_views("5m", BUCKETS, NOW)
    assert (views[0]["start"], views[0]["end"]) == ("2026-01-01T12:26:00Z", "2026-01-01T12:31:00Z")
    assert [w["placed"] for w in views[:7]] == [1 + 2 + 4, 2 + 4 + 8, 4 + 8, 4 + 8, 4 + 8, 8, 0]


def test_a_bucket_ahead_of_the_clock_is_shown_as_the_newest() -> None:
    ahead = {MINUTE + 120: placed(3)}
    assert [w["placed"] for w in window_views("1m", ahead, NOW)[:3]] == [3, 0, 0]
    assert window_views("1m", ahead, NOW)[2]["start"] == "2026-01-01T12:30:00Z"


def test_an_empty_system_shows_empty_windows_up_to_now() -> None:
    views = window_views("5m", {}, NOW + timedelta(hours=1))
    assert len(views) == SHOWN and all(w["placed"] == 0 and w["saga_ms"]["count"] == 0 for w in views)
