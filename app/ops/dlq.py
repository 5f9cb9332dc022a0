"""``streamsaga dlq list|show|redrive``: read the dead-letter topics, and send chosen letters back.

A redrive sends a dead letter's key, value and headers (without the failure headers) to the
topic it came from, with headers saying where it was redriven from. It writes down, in the same
Kafka transaction, that it redrove that letter: a compacted topic keyed by the letter's place
(``<dlq topic>|<partition>|<offset>``). A second redrive skips what is written there, so running
it twice sends nothing twice, even when the first run died half way.
"""

from __future__ import annotations

import argparse
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from app.admin import topic_configs
from app.ops import kafka, progress
from app.ops.args import UsageError
from app.ops.kafka import Stored
from config.settings import Settings
from models.events import format_time, utc_now

EXAMPLES = """examples:
  streamsaga dlq list                                  # dead letters per topic and failure reason
  streamsaga dlq list --json
  streamsaga dlq show --topic order-events --limit 5   # the letters, with their headers
  streamsaga dlq show --reason "not JSON" --key order-42
  streamsaga dlq redrive --topic payment-events --dry-run
  streamsaga dlq redrive --topic payment-events --reason "timed out"
"""
#: headers the dead-letter path added; a redriven message goes back without them
FAILURE_HEADERS = ("original.topic", "original.partition", "original.offset", "original.index", "failure.reason",
                   "failure.timestamp", "failure.class")


def add(commands: Any) -> None:
    """The ``dlq`` command and its subcommands."""
    parser = commands.add_parser("dlq", help="inspect dead letters and send them back", epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
    listing = sub.add_parser("list", help="how many dead letters each topic has, by failure reason")
    listing.add_argument("--json", action="store_true", help='print {"<topic>.DLQ": {"count": n, "by_reason": ...}}')
    for name, text in (("show", "print dead letters with their headers"),
                       ("redrive", "send dead letters back to the topic they came from, each once")):
        each = sub.add_parser(name, help=text)
        each.add_argument("--topic", help="the original topic (order-events) or its DLQ; default: every one")
        each.add_argument("--reason", help="only letters whose failure.reason contains this text")
        each.add_argument("--key", help="only letters with this key")
        each.add_argument("--partition", type=int, help="only letters in this partition of the DLQ")
        each.add_argument("--offset", type=int, help="only the letter at this offset of the DLQ")
        if name == "show":
            each.add_argument("--limit", type=int, default=20, help="print at most this many (default 20)")
            each.add_argument("--json", action="store_true", help="one JSON object per line")
        else:
            each.add_argument("--dry-run", action="store_true", help="say what would be sent, send nothing")
    parser.set_defaults(run=run)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Do what the subcommand says."""
    if args.action == "list":
        return await _list(settings, args.json)
    topics = _chosen_topics(settings, args.topic)
    if args.action == "show":
        return await _show(settings, topics, args)
    return await _redrive(settings, topics, args)


def dlq_topics(settings: Settings) -> list[str]:
    """Every dead-letter topic of the app."""
    return [name for name, kind in kafka.app_topics(settings).items() if kind == "dlq"]


def redrives_topic(settings: Settings) -> str:
    """Where redrives are written down: compacted, one key per letter redriven."""
    return settings.internal_topic(kafka.REDRIVES)


def _chosen_topics(settings: Settings, topic: str | None) -> list[str]:
    if topic is None:
        return dlq_topics(settings)
    name = kafka.resolve_topic(settings, topic)
    dlq = name if name.endswith(".DLQ") else f"{name}.DLQ"
    if dlq not in dlq_topics(settings):
        raise UsageError(f"{topic!r} has no dead-letter topic")
    return [dlq]


async def _letters(settings: Settings, topics: list[str], label: str) -> AsyncIterator[Stored]:
    """Every dead letter of the topics, with a progress bar."""
    async with kafka.consumer(settings) as consumer:
        ranges: dict[TopicPartition, tuple[int, int]] = {}
        for topic in topics:
            tps = [TopicPartition(topic, p) for p in await kafka.partitions_of(consumer, topic)]
            starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
            ranges.update({tp: (starts[tp], ends[tp]) for tp in tps})
        with progress.bar(sum(stop - start for start, stop in ranges.values()), label) as bar:
            async for record in kafka.read_range(consumer, ranges):
                bar.update(1)
                yield record


def _matches(record: Stored, args: argparse.Namespace) -> bool:
    return ((args.reason is None or args.reason in (record.header("failure.reason") or ""))
            and (args.key is None or record.key == args.key.encode())
            and (args.partition is None or record.partition == args.partition)
            and (args.offset is None or record.offset == args.offset))


async def _list(settings: Settings, as_json: bool) -> int:
    counts: dict[str, Counter[str]] = {topic: Counter() for topic in dlq_topics(settings)}
    async for record in _letters(settings, list(counts), "reading dead letters"):
        counts[record.topic][record.header("failure.reason") or "(no failure.reason header)"] += 1
    if as_json:
        summary = {topic: {"count": sum(by.values()), "by_reason": dict(by.most_common())}
                   for topic, by in counts.items()}
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        return 0
    for topic, by in counts.items():
        print(f"{topic}: {sum(by.values())}")
        for reason, n in by.most_common():
            print(f"  {n:>6}  {reason}")
    return 0


async def _show(settings: Settings, topics: list[str], args: argparse.Namespace) -> int:
    shown = 0
    async for record in _letters(settings, topics, "reading dead letters"):
        if shown >= args.limit or not _matches(record, args):
            continue
        shown += 1
        if args.json:
            print(orjson.dumps(_as_json(record)).decode())
        else:
            print(f"{record.topic}[{record.partition}]@{record.offset} key={_text(record.key)}")
            for name, value in record.headers:
                print(f"  {name}: {value.decode('utf-8', 'replace')}")
            print(f"  value: {_text(record.value)}")
    if not args.json:
        print(f"{shown} shown" + (f" (--limit {args.limit})" if shown == args.limit else ""))
    return 0


async def _redrive(settings: Settings, topics: list[str], args: argparse.Namespace) -> int:
    done = await _redriven(settings)
    chosen = [record async for record in _letters(settings, topics, "reading dead letters")
              if _matches(record, args)]
    todo = [record for record in chosen if _place(record) not in done]
    print(f"{len(chosen)} letters chosen, {len(chosen) - len(todo)} redriven before, {len(todo)} to send")
    for record in todo:
        target = record.header("original.topic")
        print(f"  {'would send' if args.dry_run else 'sending'} {record.topic}[{record.partition}]@{record.offset} "
              f"key={_text(record.key)} to {target}")
    if args.dry_run or not todo:
        return 0
    await _ensure_redrives_topic(settings)
    async with kafka.producer(settings, transactional_id=f"{settings.group_id}-dlq-redrive") as producer:
        with progress.bar(len(todo), "redriving") as bar:
            for record in todo:
                target = record.header("original.topic")
                if not target:
                    raise UsageError(f"{record.topic}@{record.offset} has no original.topic header")
                async with producer.transaction():
                    await producer.send(target, key=record.key, value=record.value, headers=_provenance(record))
                    note = {"to": target, "at": format_time(utc_now())}
                    await producer.send(redrives_topic(settings), key=_place(record).encode(),
                                        value=orjson.dumps(note))
                bar.update(1)
    print(f"redrove {len(todo)} letters")
    return 0


async def _redriven(settings: Settings) -> set[str]:
    """The places of every letter redriven before."""
    topic = redrives_topic(settings)
    async with kafka.admin(settings) as admin:
        if topic not in await admin.list_topics():
            return set()
    places: dict[str, bool] = defaultdict(bool)
    async with kafka.consumer(settings) as consumer:
        tps = [TopicPartition(topic, p) for p in await kafka.partitions_of(consumer, topic)]
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        async for record in kafka.read_range(consumer, {tp: (starts[tp], ends[tp]) for tp in tps}):
            if record.key is not None:
                places[record.key.decode()] = record.value is not None
    return {place for place, kept in places.items() if kept}


async def _ensure_redrives_topic(settings: Settings) -> None:
    async with kafka.admin(settings) as admin:
        if redrives_topic(settings) in await admin.list_topics():
            return
        with contextlib.suppress(TopicAlreadyExistsError):  # another redrive made it meanwhile
            await admin.create_topics([NewTopic(redrives_topic(settings), 1, settings.replicas,
                                                topic_configs=topic_configs(settings, compacted=True))])


def _place(record: Stored) -> str:
    return f"{record.topic}|{record.partition}|{record.offset}"


def _provenance(record: Stored) -> list[tuple[str, bytes]]:
    """The letter's own headers without the failure ones, and where it was redriven from."""
    kept = [(name, value) for name, value in record.headers if name not in FAILURE_HEADERS]
    return kept + [("redrive.dlq.topic", record.topic.encode()),
                   ("redrive.dlq.partition", str(record.partition).encode()),
                   ("redrive.dlq.offset", str(record.offset).encode()),
                   ("redrive.failure.reason", (record.header("failure.reason") or "").encode()),
                   ("redrive.at", format_time(utc_now()).encode())]


def _as_json(record: Stored) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset,
            "key": _text(record.key), "headers": {k: v.decode("utf-8", "replace") for k, v in record.headers},
            "value": _text(record.value)}


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")
