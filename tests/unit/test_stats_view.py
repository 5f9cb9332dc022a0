"""GET /stats gathers every partition's buckets once, or says it cannot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from faust.types import TP

from app.stats_view import Stats, StatsUnavailable
from models import stats
from models.measures import Placed
from models.stats import Bucket

NOW = datetime(2026, 1, 1, 12, 30, 20, tzinfo=UTC)
CHANGELOG = "app-stats-changelog"
MINUTE = stats.minute_of(NOW)


def placed(n: int) -> Bucket:
    bucket = Bucket()
    for _ in range(n):
        bucket = stats.added(bucket, Placed(NOW))
    return bucket


@dataclass
class Response:
    status: int
    body: bytes

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read(self) -> bytes:
        return self.body


@dataclass
class Client:
    """Other workers, by port: what each answers to ``?scope=local``."""

    answers: dict[int, Response]
    asked: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def get(self, url: Any, headers: dict[str, str], timeout: Any) -> Response:
        self.asked.append(str(url))
        self.headers.append(headers)
        return self.answers[url.port]


class Fake:
    """The parts of a Faust app and table that Stats reads."""

    def __init__(self, mine: list[int], rows: dict[str, bytes], others: dict[int, Response]) -> None:
        self.conf = self
        self.canonical_url = "http://127.0.0.1:6066"
        self.assignor = self
        self.router = self
        self.http_client = Client(others)
        self.changelog_topic = self
        self._mine, self._rows, self._others = mine, rows, others

    def assigned_actives(self) -> set[TP]:
        return {TP(CHANGELOG, p) for p in self._mine} | {TP("app-saga-replies", 7)}

    def table_metadata(self, name: str) -> dict[str, Any]:
        assert name == stats.STATS
        return {"http://127.0.0.1:6066": {}, **{f"http://127.0.0.1:{port}": {} for port in self._others}}

    def get_topic_name(self) -> str:
        return CHANGELOG

    def items(self) -> list[tuple[bytes, bytes]]:
        return [(key.encode(), value) for key, value in self._rows.items()]


def local_answer(partitions: list[int], buckets: dict[int, Bucket]) -> Response:
    body = {"partitions": partitions, "buckets": {str(m): b.body() for m, b in buckets.items()}}
    return Response(200, orjson.dumps(body))


ROWS = {
    stats.bucket_key(MINUTE, "saga-replies", 0): placed(1).to_json(),
    stats.bucket_key(MINUTE, "order-events", 0): placed(2).to_json(),
    stats.bucket_key(MINUTE, "saga-replies", 1): placed(4).to_json(),  # a standby copy: not this worker's
    stats.index_key("saga-replies", 0): orjson.dumps([MINUTE]),
}


def test_a_worker_tells_only_its_active_partitions_buckets() -> None:
    fake = Fake([0], ROWS, {})
    local = Stats(fake, fake, 2).local()  # type: ignore[arg-type]
    assert local["partitions"] == [0]
    assert Bucket.from_body(local["buckets"][str(MINUTE)]).placed == 3


def test_the_answer_adds_up_every_worker_s_partitions() -> None:
    fake = Fake([0], ROWS, {6067: local_answer([1], {MINUTE: placed(4), MINUTE - 60: placed(8)})})
    total = asyncio.run(Stats(fake, fake, 2).everywhere("1m"))  # type: ignore[arg-type]
    assert {minute: bucket.placed for minute, bucket in total.items()} == {MINUTE: 7, MINUTE - 60: 8}
    assert fake.http_client.asked == ["http://127.0.0.1:6067/stats?window=1m&scope=local"]
    assert fake.http_client.headers == [{}]


def test_the_other_workers_are_asked_with_the_web_token() -> None:
    fake = Fake([0], ROWS, {6067: local_answer([1], {MINUTE: placed(4)})})
    asyncio.run(Stats(fake, fake, 2, "s3cret").everywhere("1m"))  # type: ignore[arg-type]
    assert fake.http_client.headers == [{"Authorization": "Bearer s3cret"}]


@pytest.mark.parametrize(("theirs", "why"), [
    ([], "1 of 2 answered"),  # partition 1 is between owners
    ([0, 1], "2 of 2 answered"),  # partition 0 told twice: the old owner still had it
])
def test_partitions_missing_or_told_twice_is_unavailable(theirs: list[int], why: str) -> None:
    fake = Fake([0], ROWS, {6067: local_answer(theirs, {})})
    with pytest.raises(StatsUnavailable, match=why):
        asyncio.run(Stats(fake, fake, 2).everywhere("5m"))  # type: ignore[arg-type]


def test_a_worker_that_answers_badly_makes_the_answer_unavailable() -> None:
    fake = Fake([0], ROWS, {6067: Response(503, b"{}")})
    with pytest.raises(StatsUnavailable, match="answered 503"):
        asyncio.run(Stats(fake, fake, 2).everywhere("1m"))  # type: ignore[arg-type]
