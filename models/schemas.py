"""JSON Schema (2020-12) of each contract event, generated from the event records and their limits.

Types come from the records' annotations; the limits are the ones the decoder applies (lengths,
quantities, money, the cancel reasons, the schema version). What a schema cannot say (that an
order's total is the sum of its lines, that a quantity is written without a decimal point) the
worker still checks; ``tests/unit/test_schemas.py`` holds both to the same bad and good bodies.
"""

from __future__ import annotations

import dataclasses
import typing
from decimal import Decimal
from typing import Any

from models.events import (
    CANCEL_REASONS,
    EVENT_TYPES,
    ID_FIELDS,
    MAX_ID,
    MAX_ORDER_LINES,
    MAX_QUANTITY,
    MAX_TEXT,
    SCHEMA_VERSION,
)
from models.topics import topic_of

DRAFT = "https://json-schema.org/draft/2020-12/schema"
MONEY = {"type": "string", "pattern": r"^[0-9]{1,15}(\.[0-9]{1,2})?$", "description": "decimal string, 2 places"}
POSITIVE_MONEY = {**MONEY, "not": {"pattern": r"^0+(\.0+)?$"}}
RFC3339 = {"type": "string", "format": "date-time",
           "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"}
#: limits the decoder applies beyond the field's type, by (record, field)
LIMITS: dict[tuple[str, str], dict[str, Any]] = {
    ("OrderPlaced", "items"): {"minItems": 1, "maxItems": MAX_ORDER_LINES},
    ("OrderLine", "quantity"): {"minimum": 1, "maximum": MAX_QUANTITY},
    ("StockAdded", "quantity"): {"minimum": 1, "maximum": MAX_QUANTITY},
    ("OrderCancelled", "reason"): {"enum": list(CANCEL_REASONS)},
    ("FundsAdded", "amount"): POSITIVE_MONEY,
    ("UserRegistered", "email"): {"pattern": "@"},
}


def event_schema(event_type: str) -> dict[str, Any]:
    """The schema of one event type, as a JSON-ready dict."""
    cls = EVENT_TYPES[event_type]
    schema = _record(cls)
    schema["properties"] = {
        "event_id": _text("event_id"),
        "event_type": {"const": event_type},
        "occurred_at": RFC3339,
        "version": {"type": "integer", "minimum": 1, "maximum": SCHEMA_VERSION},
        **{name: each for name, each in schema["properties"].items() if name not in ("event_id", "occurred_at")},
    }
    schema["required"] = ["event_id", "event_type", "occurred_at", "version",
                          *(name for name in schema["required"] if name not in ("event_id", "occurred_at"))]
    return {"$schema": DRAFT, "$id": f"streamsaga/{event_type}.schema.json", "title": event_type,
            "description": f"{(cls.__doc__ or '').strip()} On topic {topic_of(event_type)}.", **schema}


def all_schemas() -> dict[str, dict[str, Any]]:
    """Every contract event's schema by event type."""
    return {event_type: event_schema(event_type) for event_type in EVENT_TYPES}


def _record(cls: type[Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in dataclasses.fields(cls):
        optional = field.default is None
        properties[field.name] = {**_type(hints[field.name], field.name), **LIMITS.get((cls.__name__, field.name), {})}
        if not optional:
            required.append(field.name)
    # unknown extra fields are ignored (the contract's tolerant reader)
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": True}


def _type(hint: Any, name: str) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin is tuple:
        (element,) = typing.get_args(hint)[:1]
        return {"type": "array", "items": _record(element)}
    if origin is typing.Union or origin is type(str | None):
        return {"anyOf": [_text(name), {"type": "null"}]}
    if hint is str:
        return _text(name)
    if hint is int:
        return {"type": "integer"}
    if hint is Decimal:
        return dict(MONEY)
    raise TypeError(f"no schema for {hint!r}")


def _text(name: str) -> dict[str, Any]:
    """A string with something other than blanks in it and no NUL character, as long as the decoder allows."""
    return {"type": "string", "pattern": r"\S", "not": {"pattern": r"\x00"},
            "maxLength": MAX_ID if name in ID_FIELDS else MAX_TEXT}

