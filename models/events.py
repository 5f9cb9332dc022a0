"""Every event of the public contract as a versioned record, parsed and validated here only."""

from __future__ import annotations

import dataclasses
import hashlib
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import orjson

from models.money import format_money, parse_money

SCHEMA_VERSION = 1
_NAMESPACE = uuid.UUID("6f1c2a4e-8d0b-4a8e-9b61-3c7f2e5d9a10")
_NAMESPACE_BYTES = _NAMESPACE.bytes
CANCEL_REASONS = ("OUT_OF_STOCK", "PAYMENT_DECLINED", "TIMEOUT")
MAX_TEXT = 1000
#: ids (order, customer, sku, event, saga) are kept in saga, stock and wallet state many times over
MAX_ID = 200
ID_FIELDS = frozenset({"event_id", "order_id", "customer_id", "sku", "saga_id"})
#: with ids this short, the largest order's saga state and events stay far below Kafka's 1 MB
MAX_ORDER_LINES = 400
MAX_QUANTITY = 1_000_000


class BadMessage(ValueError):
    """Input the application cannot process; it goes to the dead-letter topic with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def derived_event_id(*parts: str) -> str:
    """An event id made from its cause, so a re-sent event keeps the id of the first send.

    ``uuid.uuid5(_NAMESPACE, orjson.dumps(parts).decode())`` as text, made without building UUID objects
    (about twice as fast, and a saga derives 19 ids).
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + orjson.dumps(parts)).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def utc_now() -> datetime:
    """The current time in UTC; the only clock the domain is handed."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as the contract writes times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(raw: object) -> datetime:
    """Read an RFC 3339 timestamp that names its offset."""
    if not isinstance(raw, str):
        raise ValueError(f"must be an RFC 3339 string, got {raw!r}")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"is not an RFC 3339 time: {raw!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"has no UTC offset: {raw!r}")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class OrderLine:
    """One line of an order as the customer placed it."""

    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class StockLine:
    """A quantity of one sku, as reserved or released for an order."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class FailedLine:
    """A line that could not be reserved, with what was there."""

    sku: str
    requested: int
    available: int


@dataclass(frozen=True)
class Event:
    """Fields every event carries; subclasses add their body."""

    event_id: str
    occurred_at: str
    key_field: ClassVar[str] = "order_id"

    @property
    def event_type(self) -> str:
        """The contract's name of this event."""
        return type(self).__name__

    @property
    def aggregate_id(self) -> str:
        """The Kafka key: the id of the thing this event is about."""
        return str(getattr(self, self.key_field))

    def body(self) -> dict[str, Any]:
        """The JSON object the contract describes, money as strings."""
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "occurred_at": self.occurred_at,
            "version": SCHEMA_VERSION,
        }
        for name in field_names(type(self)):
            if name not in out:
                out[name] = to_json(getattr(self, name))
        return out

    def encode(self) -> bytes:
        """The Kafka value."""
        return orjson.dumps(self.body())

    def headers(self) -> dict[str, bytes]:
        """The Kafka headers every event the application writes carries."""
        return {
            "eventId": self.event_id.encode(),
            "eventType": self.event_type.encode(),
            "occurredAt": self.occurred_at.encode(),
            "aggregateId": self.aggregate_id.encode(),
        }


@dataclass(frozen=True)
class OrderPlaced(Event):
    """A customer placed an order; starts a saga."""

    order_id: str
    customer_id: str
    items: tuple[OrderLine, ...]
    total_amount: Decimal

    def validate(self) -> None:
        """Lines must be positive and the total must add up."""
        if not self.items:
            raise ValueError("items must not be empty")
        if len(self.items) > MAX_ORDER_LINES:
            raise ValueError(f"an order has at most {MAX_ORDER_LINES} lines, this one has {len(self.items)}")
        for line in self.items:
            if not 0 < line.quantity <= MAX_QUANTITY:
                raise ValueError(f"quantity of {line.sku!r} must be from 1 to {MAX_QUANTITY}")
        expected = sum((line.quantity * line.unit_price for line in self.items), Decimal("0.00"))
        if expected != self.total_amount:
            raise ValueError(f"total_amount {format_money(self.total_amount)} != sum of lines {format_money(expected)}")


@dataclass(frozen=True)
class OrderConfirmed(Event):
    """The order went through: stock taken, payment taken."""

    order_id: str
    customer_id: str
    total_amount: Decimal


@dataclass(frozen=True)
class OrderCancelled(Event):
    """The order did not go through; nothing is kept of it."""

    order_id: str
    customer_id: str
    reason: str

    def validate(self) -> None:
        """The reason is one the contract names."""
        if self.reason not in CANCEL_REASONS:
            raise ValueError(f"reason must be one of {CANCEL_REASONS}")


@dataclass(frozen=True)
class StockAdded(Event):
    """Stock arrived for a sku."""

    sku: str
    quantity: int
    key_field: ClassVar[str] = "sku"

    def validate(self) -> None:
        """Stock only ever arrives in positive amounts."""
        if not 0 < self.quantity <= MAX_QUANTITY:
            raise ValueError(f"quantity must be from 1 to {MAX_QUANTITY}")


@dataclass(frozen=True)
class InventoryReserved(Event):
    """Every line of an order is held for it."""

    order_id: str
    items: tuple[StockLine, ...]


@dataclass(frozen=True)
class InventoryReservationFailed(Event):
    """Some lines of an order could not be held."""

    order_id: str
    failed_items: tuple[FailedLine, ...]


@dataclass(frozen=True)
class InventoryReleased(Event):
    """Held lines of an order went back to stock."""

    order_id: str
    items: tuple[StockLine, ...]


@dataclass(frozen=True)
class FundsAdded(Event):
    """Money paid into a customer's wallet."""

    customer_id: str
    amount: Decimal
    key_field: ClassVar[str] = "customer_id"

    def validate(self) -> None:
        """Funding is a positive amount."""
        if self.amount <= 0:
            raise ValueError("amount must be greater than 0")


@dataclass(frozen=True)
class PaymentRequested(Event):
    """External mode: asks the gateway to charge the customer."""

    order_id: str
    customer_id: str
    amount: Decimal


@dataclass(frozen=True)
class PaymentProcessed(Event):
    """The customer was charged for the order."""

    order_id: str
    customer_id: str
    amount: Decimal


@dataclass(frozen=True)
class PaymentFailed(Event):
    """The customer could not be charged."""

    order_id: str
    customer_id: str
    amount: Decimal
    reason: str


@dataclass(frozen=True)
class PaymentRefunded(Event):
    """A charge for the order was given back."""

    order_id: str
    customer_id: str
    amount: Decimal


@dataclass(frozen=True)
class UserRegistered(Event):
    """A customer signed up."""

    customer_id: str
    name: str
    email: str
    key_field: ClassVar[str] = "customer_id"

    def validate(self) -> None:
        """An email has an @ in it."""
        if "@" not in self.email:
            raise ValueError("email must contain '@'")


@dataclass(frozen=True)
class CustomerNotified(Event):
    """The customer was told what happened to the order."""

    customer_id: str
    order_id: str
    message: str
    key_field: ClassVar[str] = "customer_id"


@dataclass(frozen=True)
class SagaEvent(Event):
    """Progress of one order's saga, for observers."""

    order_id: str
    saga_id: str
    step: str
    status: str
    reason: str | None = None


class SagaStarted(SagaEvent):
    """The saga began with its first step."""


class SagaStepCompleted(SagaEvent):
    """One step finished well."""


class SagaCompleted(SagaEvent):
    """Every step finished well: the order is confirmed."""


class SagaFailed(SagaEvent):
    """A step failed; compensation follows."""


class SagaTimedOut(SagaEvent):
    """No answer came in time; compensation follows."""


class CompensationCompleted(SagaEvent):
    """Every compensating action was issued."""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        OrderPlaced, OrderConfirmed, OrderCancelled, StockAdded, InventoryReserved,
        InventoryReservationFailed, InventoryReleased, FundsAdded, PaymentRequested,
        PaymentProcessed, PaymentFailed, PaymentRefunded, UserRegistered, CustomerNotified,
        SagaStarted, SagaStepCompleted, SagaCompleted, SagaFailed, SagaTimedOut,
        CompensationCompleted,
    )
}


def decode_event(value: bytes | None) -> Event:
    """Parse and validate one Kafka value; any problem raises :class:`BadMessage`."""
    if value is None:
        raise BadMessage("value is empty (tombstone)")
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"value is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadMessage("value is not a JSON object")
    return event_from_body(body)


def event_from_body(body: dict[str, Any]) -> Event:
    """Build the record for a decoded JSON object, checking every field."""
    event_type = body.get("event_type")
    cls = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if cls is None:
        raise BadMessage(f"unknown event_type {event_type!r}")
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadMessage(f"version must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise BadMessage(f"unsupported version {version} of {event_type} (this reader knows {SCHEMA_VERSION})")
    try:
        for name, read in (("event_id", _text), ("occurred_at", parse_time)):
            try:
                read(body.get(name))
            except ValueError as exc:
                raise ValueError(f"field {name!r} {exc}") from None
        event = build_record(cls, body)
        validate = getattr(event, "validate", None)
        if validate is not None:
            validate()
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise BadMessage(f"invalid {event_type}: {exc}") from None
    return event


Reader = Callable[[Any], Any]
_SCHEMAS: dict[type[Any], tuple[tuple[str, Reader, bool], ...]] = {}
_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def field_names(cls: type[Any]) -> tuple[str, ...]:
    """A dataclass's field names, looked up once per class (``dataclasses.fields`` on every event was a
    tenth of the saga's own time)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(field.name for field in dataclasses.fields(cls))
    return names


def _schema(cls: type[Any]) -> tuple[tuple[str, Reader, bool], ...]:
    """Each field's name, the reader of its annotated type and whether it may be left out; once per class."""
    schema = _SCHEMAS.get(cls)
    if schema is None:
        hints = typing.get_type_hints(cls)
        schema = _SCHEMAS[cls] = tuple(
            (f.name, _reader(hints[f.name], MAX_ID if f.name in ID_FIELDS else MAX_TEXT), f.default is None)
            for f in dataclasses.fields(cls)
        )
    return schema


def build_record(cls: type[Any], body: dict[str, Any]) -> Any:
    """Read each dataclass field of ``cls`` from ``body`` by its annotated type."""
    values: dict[str, Any] = {}
    for name, read, optional in _schema(cls):
        raw = body.get(name)
        if raw is None and optional:
            values[name] = None
            continue
        if name not in body:
            raise ValueError(f"missing field {name!r}")
        try:
            values[name] = read(raw)
        except ValueError as exc:
            raise ValueError(f"field {name!r} {exc}") from None
    return cls(**values)


def _reader(hint: Any, limit: int = MAX_TEXT) -> Reader:
    """What reads one value of the given annotated type; text of at most ``limit`` characters."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        (element,) = typing.get_args(hint)[:1]

        def read_list(raw: Any) -> tuple[Any, ...]:
            if not isinstance(raw, list):
                raise ValueError(f"must be a list, got {type(raw).__name__}")
            return tuple(build_record(element, item) if isinstance(item, dict) else _bad_item(item) for item in raw)

        return read_list
    if origin is typing.Union or origin is type(str | None):
        return lambda raw: None if raw is None else _text(raw, limit)
    if hint is str:
        return lambda raw: _text(raw, limit)
    if hint is int:
        return _integer
    if hint is Decimal:
        return parse_money
    raise TypeError(f"no reader for {hint!r}")


def _integer(raw: Any) -> int:
    """An integer, not a boolean."""
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise ValueError(f"must be an integer, got {raw!r}")
    return raw


def _bad_item(item: Any) -> Any:
    """A list element that is not an object."""
    raise ValueError(f"elements must be objects, got {item!r}")


def _text(raw: Any, limit: int = MAX_TEXT) -> str:
    """A non-empty string of at most ``limit`` characters, without NUL (which marks stored pages, ``models.paged``)."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"must be a non-empty string, got {raw!r}")
    if "\x00" in raw:
        raise ValueError("must not contain a NUL character")
    if len(raw) > limit:
        raise ValueError(f"must be at most {limit} characters")
    return raw


def to_json(value: Any) -> Any:
    """Turn record fields into JSON-ready values."""
    kind = type(value)
    if kind is str or kind is int or value is None:
        return value
    if isinstance(value, Decimal):
        return format_money(value)
    if isinstance(value, tuple):
        return [to_json(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_json(getattr(value, name)) for name in field_names(kind)}
    return value
