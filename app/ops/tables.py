"""``streamsaga tables audit|rebuild``: prove the tables right from the events, or rebuild a worker's copy.

The audit recomputes, from the public topics alone, what the views must say once every order has
its outcome: each sku's stock (added, less what confirmed orders took, nothing held), each
wallet (funded, less what confirmed orders cost), each saga's status and the counts of ``/stats``.
It asks the views of a running worker (any one: they route), so it works against any cluster, and
lists every difference. The rebuild recreates a stopped worker's RocksDB tables from the
changelogs in bulk, so that the worker starts without Faust's slow record-by-record recovery.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import rocksdict
from aiokafka import TopicPartition

from app.local_state import CLEAN_MARKER
from app.ops import kafka, progress
from app.ops.args import UsageError
from config.settings import Settings
from models.events import (
    BadMessage,
    FundsAdded,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    StockAdded,
    UserRegistered,
    decode_event,
    parse_time,
)
from models.money import format_money
from models.stats import minute_of
from models.topics import INPUT_TOPICS

EXAMPLES = """examples:
  streamsaga tables audit                              # against the worker at STREAMSAGA_WEB_HOST:PORT
  streamsaga tables audit --url http://10.0.0.5:6066 --wait 120
  streamsaga tables rebuild                            # the stopped worker's tables, from the changelogs
"""
#: requests to the views in flight at once
CONCURRENCY = 16


def add(commands: Any) -> None:
    """The ``tables`` command and its subcommands."""
    parser = commands.add_parser("tables", help="audit the tables against the events, or rebuild them",
                                 epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
    audit = sub.add_parser("audit", help="recompute stock, wallets, sagas and /stats from the events; "
                           "exit 1 on any difference")
    audit.add_argument("--url", help="a worker's web address (default: STREAMSAGA_WEB_HOST and _WEB_PORT)")
    audit.add_argument("--wait", type=float, default=60.0,
                       help="seconds a difference may last before it counts: a busy system differs for a moment "
                       "(default 60)")
    sub.add_parser("rebuild", help="rebuild a stopped worker's local tables (STREAMSAGA_DATA_DIR) from the "
                   "changelogs")
    parser.set_defaults(run=run)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Do what the subcommand says."""
    if args.action == "rebuild":
        return await rebuild(settings)
    url = (args.url or settings.web_url).rstrip("/")
    return await audit(settings, url, args.wait)


# --- audit ---------------------------------------------------------------------------------------


@dataclass
class History:
    """What the public topics say happened, each event once (by event id; an order by its id)."""

    added: Counter[str] = field(default_factory=Counter)
    funded: defaultdict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    orders: dict[str, OrderPlaced] = field(default_factory=dict)
    outcomes: dict[str, OrderConfirmed | OrderCancelled] = field(default_factory=dict)
    customers: dict[str, UserRegistered] = field(default_factory=dict)
    #: orders that reached the topic longer after they were placed than finished sagas are kept: the worker
    #: dead-letters them (``ExpiredOrder``), so they have no saga and no outcome
    expired: set[str] = field(default_factory=set)

    @property
    def in_progress(self) -> list[str]:
        """Orders placed with no outcome yet."""
        return sorted(set(self.orders) - set(self.outcomes))

    def confirmed(self) -> list[OrderPlaced]:
        """The orders that went through."""
        return [self.orders[o] for o, end in self.outcomes.items() if isinstance(end, OrderConfirmed)
                and o in self.orders]


def arrived_expired(order: OrderPlaced, timestamp_ms: int, retention: timedelta) -> bool:
    """Whether an order reached its topic at least ``retention`` after it was placed: the worker, which reads it
    no sooner, refuses it then."""
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC) - parse_time(order.occurred_at) >= retention


def forgotten(order: OrderPlaced, outcome: OrderConfirmed | OrderCancelled, now: datetime,
              retention: timedelta) -> bool:
    """Whether a saga is past its retention (after it ended, or after its order was placed if later), so a
    view that no longer has it is right."""
    return now >= max(parse_time(outcome.occurred_at), parse_time(order.occurred_at)) + retention


async def read_history(settings: Settings) -> History:
    """Read every public input topic from the start (records in timestamp order)."""
    history, seen = History(), set()
    async with kafka.consumer(settings) as consumer:
        ranges: dict[TopicPartition, tuple[int, int]] = {}
        for name in INPUT_TOPICS:
            topic = settings.topic(name)
            tps = [TopicPartition(topic, p) for p in await kafka.partitions_of(consumer, topic)]
            starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
            ranges.update({tp: (starts[tp], ends[tp]) for tp in tps})
        records = []
        with progress.bar(sum(b - a for a, b in ranges.values()), "reading events") as bar:
            async for record in kafka.read_range(consumer, ranges):
                records.append(record)
                bar.update(1)
    for record in sorted(records, key=lambda r: (r.timestamp_ms, r.topic, r.partition, r.offset)):
        try:
            event = decode_event(record.value)
        except BadMessage:
            continue  # dead-lettered by the worker
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        if isinstance(event, StockAdded):
            history.added[event.sku] += event.quantity
        elif isinstance(event, FundsAdded):
            history.funded[event.customer_id] += event.amount
        elif isinstance(event, OrderPlaced):
            if event.order_id in history.orders:
                continue
            if arrived_expired(event, record.timestamp_ms, settings.saga_retention_time):
                history.expired.add(event.order_id)
            else:
                history.orders[event.order_id] = event
                history.expired.discard(event.order_id)
        elif isinstance(event, OrderConfirmed | OrderCancelled):
            history.outcomes.setdefault(event.order_id, event)
        elif isinstance(event, UserRegistered):
            history.customers[event.customer_id] = event
    return history


async def audit(settings: Settings, url: str, wait: float) -> int:
    """Every difference between the views and the events, one per line; exit 1 if there is one.

    A system still at work differs for a moment (an order without its outcome yet, a hold its
    commit has not reached): the audit compares again until nothing differs or ``wait`` seconds
    have passed, and reports what still differs then.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while True:
            history = await read_history(settings)
            problems = await _differences(settings, Views(session, url), history)
            if not problems or loop.time() >= deadline:
                break
            print(f"{len(problems)} differences, {len(history.in_progress)} orders in progress; "
                  f"comparing again (up to {max(0.0, deadline - loop.time()):.0f} s more)")
            await asyncio.sleep(min(5.0, max(0.0, deadline - loop.time())))
    for problem in problems:
        print(problem)
    checked = (f"{len(set(history.added) | _ordered_skus(history))} skus, {len(history.funded)} wallets, "
               f"{len(history.orders)} orders, {len(history.customers)} customers")
    if history.expired:
        checked += f" ({len(history.expired)} orders placed longer ago than the saga retention left out)"
    if problems:
        print(f"audit FAILED: {len(problems)} differences ({checked} checked)")
        if history.in_progress:
            print(f"{len(history.in_progress)} orders were still in progress: an exact audit needs a system at rest "
                  "(no one placing orders, e.g. make run with STREAMSAGA_DEMO_ORDERS=0)")
        return 1
    print(f"audit passed: {checked} and the windows of /stats agree with the events")
    return 0


async def _differences(settings: Settings, views: Views, history: History) -> list[str]:
    """What the views say that the events do not."""
    problems = [f"order {order_id}: placed, no outcome yet" for order_id in history.in_progress]
    problems += await _stock(views, history)
    if settings.payment_mode == "internal":
        problems += await _wallets(views, history)
    problems += await _sagas(views, history, settings.saga_retention_time)
    problems += await _customers(views, history)
    problems += await _stats(views, history)
    return problems


class Views:
    """GETs to a worker's views, a few at a time."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url, self.gate = session, url, asyncio.Semaphore(CONCURRENCY)

    async def get(self, path: str) -> tuple[int, Any]:
        """Status and JSON body; a worker that cannot be reached is a usage error."""
        async with self.gate:
            try:
                async with self.session.get(f"{self.url}{path}") as response:
                    return response.status, orjson.loads(await response.read())
            except aiohttp.ClientConnectionError as exc:
                raise UsageError(f"no worker answers at {self.url} ({exc})") from None

    async def many(self, paths: list[str], label: str) -> list[tuple[int, Any]]:
        """Many GETs, with a progress bar."""
        with progress.bar(len(paths), label) as bar:
            async def one(path: str) -> tuple[int, Any]:
                answer = await self.get(path)
                bar.update(1)
                return answer
            return await asyncio.gather(*(one(path) for path in paths))


def _ordered_skus(history: History) -> set[str]:
    return {line.sku for order in history.orders.values() for line in order.items}


async def _stock(views: Views, history: History) -> list[str]:
    taken: Counter[str] = Counter()
    for order in history.confirmed():
        for line in order.items:
            taken[line.sku] += line.quantity
    skus = sorted(set(history.added) | _ordered_skus(history))
    answers = await views.many([f"/inventory/{sku}" for sku in skus], "checking stock")
    problems = []
    for sku, (status, body) in zip(skus, answers, strict=True):
        want = {"available": history.added[sku] - taken[sku], "reserved": 0}
        got = {"available": body["available"], "reserved": body["reserved"]} if status == 200 else \
            {"available": 0, "reserved": 0}
        if status not in (200, 404) or got != want:
            problems.append(f"stock {sku}: the view says {got if status == 200 else status}, the events say {want} "
                            f"(added {history.added[sku]}, taken by confirmed orders {taken[sku]})")
    return problems


async def _wallets(views: Views, history: History) -> list[str]:
    spent: defaultdict[str, Decimal] = defaultdict(Decimal)
    for order in history.confirmed():
        spent[order.customer_id] += order.total_amount
    customers = sorted(set(history.funded) | set(spent))
    answers = await views.many([f"/wallets/{c}" for c in customers], "checking wallets")
    problems = []
    for customer, (status, body) in zip(customers, answers, strict=True):
        want = format_money(history.funded[customer] - spent[customer])
        got = body["balance"] if status == 200 else "0.00" if status == 404 else f"HTTP {status}"
        if got != want:
            problems.append(f"wallet {customer}: the view says {got}, the events say {want} "
                            f"(funded {format_money(history.funded[customer])}, spent {format_money(spent[customer])})")
    return problems


async def _sagas(views: Views, history: History, retention: timedelta) -> list[str]:
    ended = sorted(order_id for order_id in history.orders if order_id in history.outcomes)
    answers = await views.many([f"/orders/{order_id}" for order_id in ended], "checking sagas")
    problems = []
    now = datetime.now(UTC)
    for order_id, (status, body) in zip(ended, answers, strict=True):
        outcome = history.outcomes[order_id]
        if status == 404 and forgotten(history.orders[order_id], outcome, now, retention):
            continue  # past its retention: removed, as it should be
        want = ("COMPLETED", None) if isinstance(outcome, OrderConfirmed) else \
            ("TIMED_OUT" if outcome.reason == "TIMEOUT" else "FAILED", outcome.reason)
        got = (body.get("status"), body.get("reason")) if status == 200 else (f"HTTP {status}", None)
        if got != want:
            problems.append(f"saga {order_id}: the view says {got}, the events say {want}")
    return problems


async def _customers(views: Views, history: History) -> list[str]:
    ids = sorted(history.customers)
    answers = await views.many([f"/customers/{c}" for c in ids], "checking customers")
    problems = []
    for customer, (status, body) in zip(ids, answers, strict=True):
        event = history.customers[customer]
        want = {"customer_id": customer, "name": event.name, "email": event.email}
        if status != 200 or body != want:
            problems.append(f"customer {customer}: the view says {body if status == 200 else status}, "
                            f"the events say {want}")
    return problems


async def _stats(views: Views, history: History) -> list[str]:
    """Per one-minute window shown: orders placed by their time, outcomes by theirs."""
    status, body = await views.get("/stats?window=1m")
    if status != 200:
        return [f"/stats answered {status}: {body}"]
    shown = {w["start"]: w for w in body["windows"]}
    want: dict[str, Counter[str]] = defaultdict(Counter)
    for order in history.orders.values():
        want[_minute(order.occurred_at)]["placed"] += 1
    for outcome in history.outcomes.values():
        kind = "confirmed" if isinstance(outcome, OrderConfirmed) else outcome.reason
        want[_minute(outcome.occurred_at)][kind] += 1
    problems = []
    for start, window in shown.items():
        got = Counter({"placed": window["placed"], "confirmed": window["confirmed"], **window["cancelled"]})
        if +got != +want.get(start, Counter()):
            problems.append(f"/stats {start}: counts {dict(+got)}, the events say {dict(+want.get(start, Counter()))}")
    return problems


def _minute(occurred_at: str) -> str:
    """The start of the one-minute window of an event time, as /stats writes it."""
    start = datetime.fromtimestamp(minute_of(parse_time(occurred_at)), UTC)
    return start.isoformat().replace("+00:00", "Z")


# --- rebuild -------------------------------------------------------------------------------------


async def rebuild(settings: Settings) -> int:
    """Wipe a stopped worker's tables and restore every partition of every changelog in bulk."""
    from app.composition import build  # here, not above: only the rebuild needs Faust loaded

    app = build(dataclasses.replace(settings, bulk_restore_min_records=1))
    tabledir = app.conf.tabledir
    _refuse_if_open(tabledir)
    if tabledir.exists():
        shutil.rmtree(tabledir)
    tabledir.mkdir(parents=True)
    total = 0
    async with kafka.consumer(settings) as consumer:
        for table in app.tables.values():
            topic = table.changelog_topic.get_topic_name()
            partitions = await kafka.partitions_of(consumer, topic)
            tps = [TopicPartition(topic, p) for p in partitions]
            ends = await consumer.end_offsets(tps)
            store: Any = table.data
            with progress.bar(sum(ends.values()), f"rebuilding {table.name}") as bar:
                applied = await store.bulk_restore(tps, progress=bar.update)
            print(f"{table.name}: {applied} changelog records applied")
            total += applied
    (settings.data_dir / "worker" / CLEAN_MARKER).touch()
    print(f"rebuilt {len(app.tables)} tables from {total} records in {tabledir}")
    return 0


def _refuse_if_open(tabledir: Any) -> None:
    """A running worker holds its RocksDB locks: refuse to touch its tables."""
    for lock in sorted(tabledir.glob("**/LOCK")) if tabledir.exists() else []:
        try:
            db = rocksdict.Rdict(str(lock.parent))
        except Exception as exc:  # noqa: BLE001 - rocksdict raises a plain exception for a held lock
            raise UsageError(f"a worker is using {lock.parent} ({exc}); stop it first") from None
        db.close()
