"""``streamsaga schemas --out DIR``: one JSON Schema file per contract event, generated from the models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from config.settings import Settings
from models.schemas import all_schemas

EXAMPLES = """examples:
  streamsaga schemas --out schemas/          # schemas/OrderPlaced.schema.json, ...
  check-jsonschema --schemafile schemas/OrderPlaced.schema.json order.json
"""


def add(commands: Any) -> None:
    """The ``schemas`` command."""
    parser = commands.add_parser("schemas", help="write a JSON Schema file per contract event", epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="directory to write into (created if missing)")
    parser.set_defaults(run=run)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Write every schema."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    schemas = all_schemas()
    for event_type, schema in schemas.items():
        (out / f"{event_type}.schema.json").write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {len(schemas)} schemas to {out}")
    return 0
