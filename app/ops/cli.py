"""The operator commands' command line: argparse subcommands, each with an example in its ``--help``.

They need no Faust app: plain Kafka clients and the worker's HTTP views. A bad argument is one line
on stderr and exit status 2, as argparse does; a command that finds a problem (a difference in an
audit) exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from app.kafka_clients import BrokersUnusable, check_brokers
from app.ops import dlq, load, replay, schemas, tables, topics
from app.ops.args import Parser, UsageError
from config.settings import Settings, SettingsError

#: the subcommands this module runs; every other one is Faust's (``streamsaga worker``, ...)
COMMANDS = ("replay", "dlq", "tables", "load", "topics", "schemas")


def parser() -> Parser:
    """Every operator subcommand."""
    root = Parser(prog="streamsaga", description="Operate streamsaga from the command line. Settings come from "
                  "the STREAMSAGA_* environment variables, as for the worker.",
                  epilog="The worker is Faust's command: streamsaga worker -l info (see streamsaga worker --help).")
    commands = root.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in (replay, dlq, tables, load, topics, schemas):
        command.add(commands)
    return root


async def _checked(settings: Settings, args: argparse.Namespace) -> int:
    """The command, once a broker has accepted a connection (``schemas`` needs none)."""
    if args.command != "schemas":
        await check_brokers(settings)
    return int(await args.run(settings, args))


def run(argv: Sequence[str]) -> int:
    """Parse ``argv`` (without the program name) and run the command; its exit status."""
    cli = parser()
    args = cli.parse_args(list(argv))
    try:
        settings = Settings.from_env()
        return asyncio.run(_checked(settings, args))
    except (UsageError, SettingsError) as exc:
        print(f"streamsaga {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokersUnusable as exc:
        print(f"streamsaga {args.command}: error: cannot use the Kafka brokers: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"streamsaga {args.command}: interrupted", file=sys.stderr)
        return 130
