"""``GET /stats`` for the whole system on any worker: this worker's buckets, and every other worker's.

Each worker keeps the buckets of the partitions it owns. The answering worker asks each owner
(Faust's router knows who owns which partition) for its buckets with ``?scope=local`` and adds
them up; it answers only when the partitions of the answers are every partition, each once.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import aiohttp
import orjson
from faust.types import AppT, TableT
from yarl import URL

from app.faust_app import bearer_headers
from models.stats import STATS, Bucket, parse_bucket_key

#: how long the answering worker waits for another worker's buckets
ASK_TIMEOUT_S = 5.0


class StatsUnavailable(Exception):
    """The buckets of some partition cannot be had now: a worker did not answer, or partitions are moving."""


class Stats:
    """Gathers the stats table's buckets of this worker and of the others."""

    def __init__(self, app: AppT, table: TableT, partitions: int, web_token: str = "") -> None:
        self.app, self.table, self.partitions = app, table, partitions
        #: the other workers' views want it too (``STREAMSAGA_WEB_TOKEN``)
        self.headers = bearer_headers(web_token)

    def local(self) -> dict[str, Any]:
        """This worker's active partitions and the sum of their buckets by minute, as ``?scope=local`` answers."""
        topic = self.table.changelog_topic.get_topic_name()
        mine = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}
        buckets: dict[int, Bucket] = defaultdict(Bucket)
        for key, value in self.table.items():
            parsed = parse_bucket_key(key.decode() if isinstance(key, bytes) else key)
            if parsed is not None and parsed[1] in mine and value is not None:
                buckets[parsed[0]] += Bucket.from_json(value)
        return {"partitions": sorted(mine),
                "buckets": {str(minute): bucket.body() for minute, bucket in buckets.items()}}

    async def everywhere(self, window: str) -> dict[int, Bucket]:
        """Every partition's buckets by minute, from whichever worker owns each."""
        answers = [self.local()]
        others = [host for host in self.app.router.table_metadata(STATS) if not self._is_me(host)]
        answers += await asyncio.gather(*(self._ask(host, window) for host in others))
        covered = [p for answer in answers for p in answer["partitions"]]
        if sorted(covered) != list(range(self.partitions)):
            raise StatsUnavailable(f"partitions are moving between workers ({len(set(covered))} of "
                                   f"{self.partitions} answered); retry shortly")
        total: dict[int, Bucket] = defaultdict(Bucket)
        for answer in answers:
            for minute, body in answer["buckets"].items():
                total[int(minute)] += Bucket.from_body(body)
        return total

    def _is_me(self, host: str) -> bool:
        me, other = URL(str(self.app.conf.canonical_url)), URL(host)
        return (me.host, me.port) == (other.host, other.port)

    async def _ask(self, host: str, window: str) -> dict[str, Any]:
        url = URL(host).with_path("/stats").with_query(window=window, scope="local")
        try:
            async with self.app.http_client.get(url, headers=self.headers,
                                                timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT_S)) as response:
                if response.status != 200:
                    raise StatsUnavailable(f"worker {host} answered {response.status}; retry shortly")
                answer: dict[str, Any] = orjson.loads(await response.read())
                return answer
        except (TimeoutError, OSError, aiohttp.ClientError) as exc:
            raise StatsUnavailable(f"worker {host} did not answer ({type(exc).__name__}); retry shortly") from None
