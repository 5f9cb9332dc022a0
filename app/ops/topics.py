"""``streamsaga topics list|create|describe``: every topic the app uses, as the broker has it."""

from __future__ import annotations

import argparse
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from app.admin import ensure_topics
from app.ops import kafka
from config.settings import Settings

EXAMPLES = """examples:
  streamsaga topics list               # every topic: kind, partitions, replication, cleanup, records
  streamsaga topics list --json
  streamsaga topics create             # create the missing ones with STREAMSAGA_PARTITIONS partitions
  streamsaga topics describe order-events
"""


def add(commands: Any) -> None:
    """The ``topics`` command and its subcommands."""
    parser = commands.add_parser("topics", help="list, create and describe the app's topics", epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
    listing = sub.add_parser("list", help="every topic the app uses (public, dlq, internal, changelog)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.add_parser("create", help="create every missing topic")
    describe = sub.add_parser("describe", help="one topic's partitions: leader, replicas, in-sync, offsets")
    describe.add_argument("topic", help="a topic the app uses, by contract name or full name")
    describe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Do what the subcommand says."""
    if args.action == "create":
        created = await ensure_topics(settings)
        print(f"created {len(created)} topics" + (": " + ", ".join(created) if created else ""))
        return 0
    if args.action == "describe":
        return await _describe(settings, kafka.resolve_topic(settings, args.topic), args.json)
    return await _list(settings, args.json)


async def _list(settings: Settings, as_json: bool) -> int:
    kinds = kafka.app_topics(settings)
    async with kafka.admin(settings) as admin, kafka.consumer(settings) as consumer:
        existing = set(await admin.list_topics())
        present = [name for name in kinds if name in existing]
        described = {t["topic"]: t for t in await admin.describe_topics(present)} if present else {}
        policies = await _cleanup_policies(admin, present)
        tps = [TopicPartition(name, p["partition"]) for name in present for p in described[name]["partitions"]]
        ends = await consumer.end_offsets(tps) if tps else {}
    rows = []
    for name, kind in kinds.items():
        if name not in existing:
            rows.append({"topic": name, "kind": kind, "exists": False})
            continue
        partitions = described[name]["partitions"]
        rows.append({
            "topic": name, "kind": kind, "exists": True, "partitions": len(partitions),
            "replication": min(len(p["replicas"]) for p in partitions), "cleanup_policy": policies.get(name, "?"),
            "end_offsets": sum(end for tp, end in ends.items() if tp.topic == name),
        })
    if as_json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    else:
        _table(["topic", "kind", "partitions", "replication", "cleanup", "end offsets"], [
            [r["topic"], r["kind"], r.get("partitions", "missing"), r.get("replication", "-"),
             r.get("cleanup_policy", "-"), r.get("end_offsets", "-")] for r in rows
        ])
    return 0


async def _describe(settings: Settings, topic: str, as_json: bool) -> int:
    async with kafka.admin(settings) as admin, kafka.consumer(settings) as consumer:
        partitions = await kafka.partitions_of(consumer, topic)
        (described,) = await admin.describe_topics([topic])
        tps = [TopicPartition(topic, p) for p in partitions]
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        policy = (await _cleanup_policies(admin, [topic])).get(topic, "?")
    rows = [{"partition": p["partition"], "leader": p["leader"], "replicas": p["replicas"], "isr": p["isr"],
             "start_offset": starts[TopicPartition(topic, p["partition"])],
             "end_offset": ends[TopicPartition(topic, p["partition"])]}
            for p in sorted(described["partitions"], key=lambda p: p["partition"])]
    if as_json:
        print(orjson.dumps({"topic": topic, "cleanup_policy": policy, "partitions": rows},
                           option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{topic}  cleanup.policy={policy}")
    _table(["partition", "leader", "replicas", "in-sync", "start", "end"], [
        [r["partition"], r["leader"], ",".join(map(str, r["replicas"])), ",".join(map(str, r["isr"])),
         r["start_offset"], r["end_offset"]] for r in rows
    ])
    return 0


async def _cleanup_policies(admin: Any, topics: list[str]) -> dict[str, str]:
    """Each topic's ``cleanup.policy``."""
    if not topics:
        return {}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, configs={"cleanup.policy": None}) for name in topics])
    policies: dict[str, str] = {}
    for response in responses:
        for resource in response.resources:
            _, _, _, name, entries = resource[:5]
            for entry in entries:
                if entry[0] == "cleanup.policy":
                    policies[name] = entry[1]
    return policies


def _table(header: list[str], rows: list[list[Any]]) -> None:
    """Print rows under a header, columns padded to their widest cell."""
    cells = [header, *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
