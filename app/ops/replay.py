"""``streamsaga replay``: publish a range of a topic's records again, to it or to another topic.

Key, value and headers stay as they were; headers saying that it is a replay, and of which record,
are added. Replaying what was processed already changes nothing: the contract makes every event
idempotent by its ``event_id`` (an ``OrderPlaced`` by its ``order_id``).
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from aiokafka import TopicPartition

from app.ops import kafka, progress
from app.ops.args import UsageError, parse_moment
from config.settings import Settings
from models.events import format_time, utc_now

EXAMPLES = """examples:
  streamsaga replay --topic order-events --from-time PT1H --dry-run     # what the last hour holds
  streamsaga replay --topic order-events --from-time 2026-01-01T10:00:00Z --to-time 2026-01-01T11:00:00Z
  streamsaga replay --topic inventory-events --partition 3 --from-offset 100 --to-offset 200
  streamsaga replay --topic order-events --to other.order-events       # into another app's topic

Offsets are per partition, from included, to excluded; times are ISO 8601 with an offset, or a
duration back from now (PT1H, P1D). Without a range the whole topic is replayed.
"""


def add(commands: Any) -> None:
    """The ``replay`` command."""
    parser = commands.add_parser("replay", help="publish a range of a topic's events again", epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topic", required=True, help="a public topic: order-events, inventory-events, ...")
    parser.add_argument("--to", dest="target", help="the topic to write to (default: the same topic)")
    parser.add_argument("--partition", type=int, action="append", help="only this partition (repeatable)")
    parser.add_argument("--from-offset", type=int, help="first offset, in every partition chosen")
    parser.add_argument("--to-offset", type=int, help="offset to stop before, in every partition chosen")
    parser.add_argument("--from-time", help="first record time: ISO 8601, or a duration back from now (PT1H)")
    parser.add_argument("--to-time", help="record time to stop before: ISO 8601, or a duration back from now")
    parser.add_argument("--dry-run", action="store_true", help="count what would be sent, send nothing")
    parser.set_defaults(run=run)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Replay the chosen range."""
    source = kafka.resolve_topic(settings, args.topic)
    if kafka.app_topics(settings)[source] != "public":
        raise UsageError(f"{args.topic!r} is not a public topic; dead letters go back with `streamsaga dlq redrive`")
    offsets = args.from_offset is not None or args.to_offset is not None
    times = args.from_time is not None or args.to_time is not None
    if offsets and times:
        raise UsageError("give an offset range or a time range, not both")
    now = utc_now()
    async with kafka.consumer(settings) as consumer:
        partitions = await kafka.partitions_of(consumer, source)
        chosen = args.partition or partitions
        unknown = sorted(set(chosen) - set(partitions))
        if unknown:
            raise UsageError(f"{source} has no partition {unknown[0]} (it has 0 to {len(partitions) - 1})")
        target = source if args.target is None else args.target
        target_partitions = await kafka.partitions_of(consumer, target)
        tps = [TopicPartition(source, p) for p in chosen]
        ranges = await _ranges(consumer, tps, args, now, times)
        total = sum(stop - start for start, stop in ranges.values())
        if total == 0:
            raise UsageError(f"the range holds no records of {source}")
        print(f"{source} -> {target}: offsets " + ", ".join(
            f"[{tp.partition}] {start}..{stop - 1}" for tp, (start, stop) in sorted(ranges.items(), key=_by_partition)))
        if args.dry_run:
            with progress.bar(total, "counting") as bar:
                found = 0
                async for _ in kafka.read_range(consumer, ranges):
                    found += 1
                    bar.update(1)
            print(f"would replay {found} records (dry run: nothing sent)")
            return 0
        sent = 0
        async with kafka.producer(settings) as producer:
            with progress.bar(total, "replaying") as bar:
                async for record in kafka.read_range(consumer, ranges):
                    headers = [*record.headers, ("replay.source.topic", source.encode()),
                               ("replay.source.partition", str(record.partition).encode()),
                               ("replay.source.offset", str(record.offset).encode()),
                               ("replay.at", format_time(now).encode())]
                    partition = record.partition if record.partition in target_partitions else None
                    await producer.send(target, key=record.key, value=record.value, headers=headers,
                                        partition=partition)
                    sent += 1
                    bar.update(1)
            await producer.flush()
    print(f"replayed {sent} records to {target}")
    return 0


async def _ranges(consumer: Any, tps: list[TopicPartition], args: argparse.Namespace, now: datetime,
                  times: bool) -> dict[TopicPartition, tuple[int, int]]:
    """Each partition's ``[start, stop)``; an empty or future range is a usage error."""
    starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
    if times:
        try:
            since = parse_moment(args.from_time, now) if args.from_time else None
            until = parse_moment(args.to_time, now) if args.to_time else None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if since is not None and since > now:
            raise UsageError(f"--from-time {args.from_time} is in the future")
        if since is not None and until is not None and since >= until:
            raise UsageError("--from-time must be before --to-time")
        first = await kafka.offsets_at(consumer, tps, since) if since else starts
        last = await kafka.offsets_at(consumer, tps, until) if until else ends
        return {tp: (first[tp], last[tp]) for tp in tps}
    low, high = args.from_offset, args.to_offset
    if low is not None and low < 0 or high is not None and high < 0:
        raise UsageError("offsets are not negative")
    if low is not None and high is not None and low >= high:
        raise UsageError(f"--from-offset {low} must be below --to-offset {high} (the range excludes its end)")
    if low is not None and all(low >= ends[tp] for tp in tps):
        raise UsageError(f"--from-offset {low} is past the end of every partition chosen")
    return {tp: (max(starts[tp], low or 0), min(ends[tp], ends[tp] if high is None else high)) for tp in tps}


def _by_partition(item: tuple[TopicPartition, tuple[int, int]]) -> int:
    return item[0].partition
