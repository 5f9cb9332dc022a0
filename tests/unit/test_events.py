"""models.events: the public contract's records, their JSON bodies, headers and the strict/tolerant reader."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest

from models.events import (
    CANCEL_REASONS,
    EVENT_TYPES,
    MAX_ID,
    MAX_ORDER_LINES,
    MAX_TEXT,
    SCHEMA_VERSION,
    BadMessage,
    Event,
    OrderLine,
    OrderPlaced,
    UserRegistered,
    decode_event,
    derived_event_id,
    event_from_body,
    format_time,
    parse_time,
)

OCCURRED = "2024-05-06T07:08:09.123Z"
COMMON = {"event_id": "evt-1", "occurred_at": OCCURRED, "version": 1}
SAGA = {"order_id": "o-1", "saga_id": "s-1", "step": "INVENTORY_RESERVATION", "status": "IN_PROGRESS", "reason": None}

# One canonical body per event type, written the way the contract describes it (distinct ids so
# the aggregate id of each type is unambiguous: order "o-1", customer "c-1", sku "sku-1").
BODIES: dict[str, dict[str, Any]] = {
    "OrderPlaced": {
        "order_id": "o-1",
        "customer_id": "c-1",
        "items": [
            {"sku": "sku-1", "quantity": 2, "unit_price": "19.99"},
            {"sku": "sku-2", "quantity": 1, "unit_price": "5.00"},
        ],
        "total_amount": "44.98",
    },
    "OrderConfirmed": {"order_id": "o-1", "customer_id": "c-1", "total_amount": "44.98"},
    "OrderCancelled": {"order_id": "o-1", "customer_id": "c-1", "reason": "OUT_OF_STOCK"},
    "StockAdded": {"sku": "sku-1", "quantity": 10},
    "InventoryReserved": {"order_id": "o-1", "items": [{"sku": "sku-1", "quantity": 2}]},
    "InventoryReservationFailed": {
        "order_id": "o-1",
        "failed_items": [{"sku": "sku-1", "requested": 2, "available": 1}],
    },
    "InventoryReleased": {"order_id": "o-1", "items": [{"sku": "sku-1", "quantity": 2}]},
    "FundsAdded": {"customer_id": "c-1", "amount": "100.00"},
    "PaymentRequested": {"order_id": "o-1", "customer_id": "c-1", "amount": "44.98"},
    "PaymentProcessed": {"order_id": "o-1", "customer_id": "c-1", "amount": "44.98"},
    "PaymentFailed": {"order_id": "o-1", "customer_id": "c-1", "amount": "44.98", "reason": "INSUFFICIENT_FUNDS"},
    "PaymentRefunded": {"order_id": "o-1", "customer_id": "c-1", "amount": "44.98"},
    "UserRegistered": {"customer_id": "c-1", "name": "Ada Lovelace", "email": "ada@example.com"},
    "CustomerNotified": {"customer_id": "c-1", "order_id": "o-1", "message": "Your order was confirmed."},
    "SagaStarted": dict(SAGA),
    "SagaStepCompleted": {**SAGA, "status": "COMPLETED"},
    "SagaCompleted": {**SAGA, "step": "ORDER_CONFIRMATION", "status": "COMPLETED"},
    "SagaFailed": {**SAGA, "status": "FAILED", "reason": "OUT_OF_STOCK"},
    "SagaTimedOut": {**SAGA, "status": "TIMED_OUT", "reason": "TIMEOUT"},
    "CompensationCompleted": {**SAGA, "status": "COMPLETED"},
}

# The Kafka key of each type, per the contract's topic table.
AGGREGATE_FIELD = {
    "OrderPlaced": "order_id",
    "OrderConfirmed": "order_id",
    "OrderCancelled": "order_id",
    "StockAdded": "sku",
    "InventoryReserved": "order_id",
    "InventoryReservationFailed": "order_id",
    "InventoryReleased": "order_id",
    "FundsAdded": "customer_id",
    "PaymentRequested": "order_id",
    "PaymentProcessed": "order_id",
    "PaymentFailed": "order_id",
    "PaymentRefunded": "order_id",
    "UserRegistered": "customer_id",
    "CustomerNotified": "customer_id",
    "SagaStarted": "order_id",
    "SagaStepCompleted": "order_id",
    "SagaCompleted": "order_id",
    "SagaFailed": "order_id",
    "SagaTimedOut": "order_id",
    "CompensationCompleted": "order_id",
}
ALL_TYPES = sorted(BODIES)


def body_of(event_type: str, **overrides: Any) -> dict[str, Any]:
    """A full, valid JSON body of ``event_type`` with some fields replaced."""
    body = {**COMMON, "event_type": event_type, **copy.deepcopy(BODIES[event_type])}
    body.update(overrides)
    return body


def without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in names}


def decode(body: Any) -> Event:
    return decode_event(orjson.dumps(body))


def bad(value: bytes | None) -> BadMessage:
    """The BadMessage decoding ``value`` raises."""
    with pytest.raises(BadMessage) as caught:
        decode_event(value)
    assert caught.value.reason == str(caught.value)
    assert caught.value.reason.strip(), "a dead letter needs a reason"
    return caught.value


def bad_body(body: Any) -> str:
    return bad(orjson.dumps(body)).reason


def placed(**overrides: Any) -> dict[str, Any]:
    return body_of("OrderPlaced", **overrides)


# --- the set of types --------------------------------------------------------------------------


def test_event_types_are_exactly_the_contracts() -> None:
    assert set(EVENT_TYPES) == set(BODIES)
    for name, cls in EVENT_TYPES.items():
        assert cls.__name__ == name


def test_schema_version_is_one() -> None:
    assert SCHEMA_VERSION == 1


# --- round trips, bodies, headers --------------------------------------------------------------


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_decode_then_body_gives_back_the_contract_body(event_type: str) -> None:
    body = body_of(event_type)
    event = decode(body)
    assert type(event) is EVENT_TYPES[event_type]
    assert event.event_type == event_type
    assert event.body() == body


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_encode_decode_round_trip(event_type: str) -> None:
    event = decode(body_of(event_type))
    again = decode_event(event.encode())
    assert again == event
    assert type(again) is type(event)
    assert again.encode() == event.encode()


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_body_has_the_common_fields(event_type: str) -> None:
    body = decode(body_of(event_type)).body()
    assert body["event_id"] == "evt-1"
    assert body["event_type"] == event_type
    assert body["occurred_at"] == OCCURRED
    assert body["version"] == 1 and type(body["version"]) is int


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_headers_are_exactly_the_contracts(event_type: str) -> None:
    event = decode(body_of(event_type))
    key = BODIES[event_type][AGGREGATE_FIELD[event_type]]
    assert event.aggregate_id == key
    assert event.headers() == {
        "eventId": b"evt-1",
        "eventType": event_type.encode(),
        "occurredAt": OCCURRED.encode(),
        "aggregateId": key.encode(),
    }


def test_aggregate_ids_differ_by_type() -> None:
    assert decode(body_of("StockAdded")).aggregate_id == "sku-1"
    assert decode(body_of("FundsAdded")).aggregate_id == "c-1"
    assert decode(body_of("UserRegistered")).aggregate_id == "c-1"
    assert decode(body_of("CustomerNotified")).aggregate_id == "c-1"
    assert decode(body_of("PaymentProcessed")).aggregate_id == "o-1"
    assert decode(body_of("InventoryReserved")).aggregate_id == "o-1"


def test_order_placed_decodes_to_typed_values() -> None:
    event = decode(placed())
    assert isinstance(event, OrderPlaced)
    assert event.items == (
        OrderLine(sku="sku-1", quantity=2, unit_price=Decimal("19.99")),
        OrderLine(sku="sku-2", quantity=1, unit_price=Decimal("5.00")),
    )
    assert event.total_amount == Decimal("44.98")


def test_money_is_written_as_two_place_strings() -> None:
    event = decode(placed(items=[{"sku": "a", "quantity": 3, "unit_price": "2.5"}], total_amount="7.5"))
    body = event.body()
    assert body["total_amount"] == "7.50"
    assert body["items"] == [{"sku": "a", "quantity": 3, "unit_price": "2.50"}]
    assert b'"total_amount":"7.50"' in event.encode()


def test_saga_event_reason_is_optional_and_written_as_null() -> None:
    event = decode(without(body_of("SagaStarted"), "reason"))
    assert event.reason is None  # type: ignore[attr-defined]
    assert event.body()["reason"] is None
    failed = decode(body_of("SagaFailed"))
    assert failed.reason == "OUT_OF_STOCK"  # type: ignore[attr-defined]


def test_non_ascii_text_is_accepted_and_round_trips() -> None:
    body = body_of("UserRegistered", customer_id="客户-1", name="Zoë 李", email="zoë@例え.jp")
    event = decode(body)
    assert isinstance(event, UserRegistered)
    assert event.name == "Zoë 李"
    assert decode_event(event.encode()) == event
    assert event.headers()["aggregateId"] == "客户-1".encode()
    assert "Zoë 李".encode() in event.encode()  # UTF-8, not \u escapes required


def test_non_ascii_sku_in_order_lines() -> None:
    items = [{"sku": "tasse-café", "quantity": 1, "unit_price": "3.00"}]
    event = decode(placed(items=items, total_amount="3.00"))
    assert event.items[0].sku == "tasse-café"  # type: ignore[attr-defined]


# --- tolerant reader ---------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_unknown_extra_fields_are_ignored(event_type: str) -> None:
    plain = decode(body_of(event_type))
    extended = decode(body_of(event_type, shipping={"express": True}, note=None, x_trace_id="abc"))
    assert extended == plain
    assert "shipping" not in extended.body()


def test_unknown_fields_inside_items_are_ignored() -> None:
    items = [
        {"sku": "sku-1", "quantity": 2, "unit_price": "19.99", "colour": "red"},
        {"sku": "sku-2", "quantity": 1, "unit_price": "5.00", "gift": True},
    ]
    assert decode(placed(items=items)) == decode(placed())


def test_headers_are_optional_on_input() -> None:
    """Headers are optional on input: a body alone is a complete event."""
    assert decode_event(orjson.dumps(placed())).event_id == "evt-1"


# --- bad messages ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"not json", b"", b"{", b"{'a': 1}", b"\xff\xfe", b'{"a": 1,}'])
def test_not_json(value: bytes) -> None:
    assert "not JSON" in bad(value).reason


@pytest.mark.parametrize("value", [b"[]", b"[1, 2]", b'"OrderPlaced"', b"42", b"true", b"null"])
def test_json_that_is_not_an_object(value: bytes) -> None:
    assert bad(value).reason == "value is not a JSON object"


def test_null_value_tombstone() -> None:
    assert "empty" in bad(None).reason


@pytest.mark.parametrize("event_type", ["Nope", "orderplaced", "", 5, None, ["OrderPlaced"]])
def test_unknown_event_type(event_type: Any) -> None:
    assert "unknown event_type" in bad_body({**placed(), "event_type": event_type})


def test_missing_event_type() -> None:
    assert "unknown event_type None" in bad_body(without(placed(), "event_type"))


def test_version_two_is_unreadable() -> None:
    reason = bad_body(placed(version=2))
    assert "unsupported version 2" in reason and "OrderPlaced" in reason


@pytest.mark.parametrize("version", [0, -1, "1", 1.0, True, None, [1]])
def test_version_must_be_a_positive_integer(version: Any) -> None:
    assert "version must be a positive integer" in bad_body(placed(version=version))


def test_missing_version() -> None:
    assert "version must be a positive integer, got None" in bad_body(without(placed(), "version"))


@pytest.mark.parametrize("field", ["event_id", "occurred_at"])
def test_missing_common_field_names_the_field(field: str) -> None:
    reason = bad_body(without(placed(), field))
    assert reason.startswith("invalid OrderPlaced: ")
    assert field in reason, f"reason {reason!r} should say which field is missing"


@pytest.mark.parametrize("event_type", ALL_TYPES)
@pytest.mark.parametrize("field", ["event_id", "occurred_at"])
def test_missing_common_field_is_a_bad_message_for_every_type(event_type: str, field: str) -> None:
    assert bad_body(without(body_of(event_type), field)).startswith(f"invalid {event_type}: ")


@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        (event_type, field)
        for event_type in ALL_TYPES
        for field in BODIES[event_type]
        if field != "reason" or not event_type.startswith(("Saga", "Compensation"))
    ],
)
def test_missing_body_field(event_type: str, field: str) -> None:
    reason = bad_body(without(body_of(event_type), field))
    assert reason == f"invalid {event_type}: missing field {field!r}"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"order_id": None}, "field 'order_id' must be a non-empty string, got None"),
        ({"order_id": 17}, "field 'order_id' must be a non-empty string"),
        ({"customer_id": ["c-1"]}, "field 'customer_id' must be a non-empty string"),
        ({"items": "sku-1"}, "field 'items' must be a list, got str"),
        ({"items": {"sku": "sku-1"}}, "field 'items' must be a list, got dict"),
        ({"items": None}, "field 'items' must be a list"),
        ({"total_amount": 44.98}, "field 'total_amount' must be a decimal string"),
        ({"total_amount": 44}, "field 'total_amount' must be a decimal string"),
        ({"total_amount": "44.980"}, "field 'total_amount' must be a decimal string"),
        ({"total_amount": "-44.98"}, "field 'total_amount' must be a decimal string"),
        ({"total_amount": "4.498e1"}, "field 'total_amount' must be a decimal string"),
    ],
)
def test_wrong_types_in_order_placed(overrides: dict[str, Any], fragment: str) -> None:
    reason = bad_body(placed(**overrides))
    assert reason.startswith("invalid OrderPlaced: ")
    assert fragment in reason


def line(**overrides: Any) -> list[dict[str, Any]]:
    """A one-line items list (sku-1 x 2 at 19.99) with some fields replaced."""
    return [{"sku": "sku-1", "quantity": 2, "unit_price": "19.99", **overrides}]


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        (line(quantity="2"), "field 'items' field 'quantity' must be an integer, got '2'"),
        (line(quantity=True), "field 'quantity' must be an integer, got True"),
        (line(quantity=2.0), "field 'quantity' must be an integer, got 2.0"),
        (line(quantity=None), "field 'quantity' must be an integer, got None"),
        (line(unit_price=19.99), "field 'unit_price' must be a decimal string"),
        (line(unit_price="19.999"), "field 'unit_price' must be a decimal string"),
        (line(sku=""), "field 'sku' must be a non-empty string"),
        (line(sku=42), "field 'sku' must be a non-empty string"),
        ([{"quantity": 2, "unit_price": "19.99"}], "field 'items' missing field 'sku'"),
        ([{"sku": "sku-1", "unit_price": "19.99"}], "missing field 'quantity'"),
        ([{"sku": "sku-1", "quantity": 2}], "missing field 'unit_price'"),
        (["sku-1"], "field 'items' elements must be objects, got 'sku-1'"),
        ([1], "elements must be objects, got 1"),
        ([None], "elements must be objects, got None"),
        ([[{"sku": "sku-1"}]], "elements must be objects"),
        ([*line(), "extra"], "elements must be objects"),
        ([], "items must not be empty"),
    ],
)
def test_bad_order_lines(items: list[Any], fragment: str) -> None:
    reason = bad_body(placed(items=items, total_amount="39.98"))
    assert reason.startswith("invalid OrderPlaced: ")
    assert fragment in reason


@pytest.mark.parametrize("quantity", [0, -1, -100])
def test_order_line_quantity_must_be_positive(quantity: int) -> None:
    reason = bad_body(placed(items=line(quantity=quantity), total_amount="0.00"))
    assert "quantity of 'sku-1' must be from 1 to 1000000" in reason


def test_total_amount_must_match_the_lines() -> None:
    reason = bad_body(placed(total_amount="44.97"))
    assert reason == "invalid OrderPlaced: total_amount 44.97 != sum of lines 44.98"


def test_total_amount_equal_in_value_with_fewer_places_is_accepted() -> None:
    event = decode(placed(items=line(quantity=2, unit_price="5"), total_amount="10"))
    assert event.total_amount == Decimal("10.00")  # type: ignore[attr-defined]


def test_order_with_an_enormous_line_is_a_bad_message_not_a_crash() -> None:
    """A sum of lines too large for the decimal context must still be reported as a BadMessage."""
    items = line(quantity=10**17, unit_price="999999999999999.99")
    reason = bad_body(placed(items=items, total_amount="1.00"))
    assert "quantity of 'sku-1' must be from 1 to 1000000" in reason


def test_order_whose_lines_sum_past_any_money_is_a_bad_message() -> None:
    items = line(quantity=1_000_000, unit_price="999999999999999.99")
    reason = bad_body(placed(items=items, total_amount="999999999999999.99"))
    assert "total_amount" in reason


@pytest.mark.parametrize("quantity", [0, -5])
def test_stock_added_quantity_must_be_positive(quantity: int) -> None:
    assert "quantity must be from 1 to 1000000" in bad_body(body_of("StockAdded", quantity=quantity))


@pytest.mark.parametrize("quantity", ["10", True, 10.0, 10.5])
def test_stock_added_quantity_must_be_an_integer(quantity: Any) -> None:
    assert "field 'quantity' must be an integer" in bad_body(body_of("StockAdded", quantity=quantity))


@pytest.mark.parametrize("amount", ["0.00", "0"])
def test_funds_added_amount_must_be_positive(amount: str) -> None:
    assert "amount must be greater than 0" in bad_body(body_of("FundsAdded", amount=amount))


@pytest.mark.parametrize("amount", [100.0, 100, "100.001", "1e2", "-5.00"])
def test_funds_added_amount_must_be_money(amount: Any) -> None:
    assert "field 'amount' must be a decimal string" in bad_body(body_of("FundsAdded", amount=amount))


@pytest.mark.parametrize("reason", CANCEL_REASONS)
def test_order_cancelled_accepts_the_contract_reasons(reason: str) -> None:
    assert decode(body_of("OrderCancelled", reason=reason)).reason == reason  # type: ignore[attr-defined]


@pytest.mark.parametrize("reason", ["BORED", "timeout", "out_of_stock"])
def test_order_cancelled_refuses_other_reasons(reason: str) -> None:
    assert "reason must be one of" in bad_body(body_of("OrderCancelled", reason=reason))


def test_user_registered_email_needs_an_at() -> None:
    assert "email must contain '@'" in bad_body(body_of("UserRegistered", email="ada.example.com"))


@pytest.mark.parametrize("field", ["order_id", "customer_id"])
@pytest.mark.parametrize("value", ["", " ", "\t\n"])
def test_empty_strings_are_refused(field: str, value: str) -> None:
    assert f"field {field!r} must be a non-empty string" in bad_body(placed(**{field: value}))


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_event_id_is_refused(value: str) -> None:
    assert "must be a non-empty string" in bad_body(placed(event_id=value))


def test_ids_up_to_the_id_limit_are_accepted() -> None:
    assert decode(placed(order_id="o" * MAX_ID)).order_id == "o" * MAX_ID  # type: ignore[attr-defined]


def test_text_up_to_the_text_limit_is_accepted() -> None:
    body = body_of("CustomerNotified", message="m" * MAX_TEXT)
    assert decode(body).message == "m" * MAX_TEXT  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "overrides",
    [
        {"order_id": "o" * (MAX_ID + 1)},
        {"customer_id": "c" * (MAX_ID + 1)},
        {"event_id": "e" * (MAX_ID + 1)},
        {"items": line(sku="s" * (MAX_ID + 1))},
    ],
)
def test_over_long_ids_are_refused(overrides: dict[str, Any]) -> None:
    """An id is stored in saga, stock and wallet state many times over: it is kept short enough that
    the largest order's state fits a Kafka message."""
    body = placed(**overrides)
    if "items" in overrides:
        body["total_amount"] = "39.98"
    assert f"at most {MAX_ID} characters" in bad_body(body)


def test_an_order_of_at_most_the_line_limit_is_accepted_and_one_more_is_refused() -> None:
    lines = [{"sku": f"sku-{n}", "quantity": 1, "unit_price": "1.00"} for n in range(MAX_ORDER_LINES + 1)]
    body = placed(items=lines[:MAX_ORDER_LINES], total_amount=f"{MAX_ORDER_LINES}.00")
    assert len(decode(body).items) == MAX_ORDER_LINES  # type: ignore[attr-defined]
    reason = bad_body(placed(items=lines, total_amount=f"{MAX_ORDER_LINES + 1}.00"))
    assert reason == f"invalid OrderPlaced: an order has at most {MAX_ORDER_LINES} lines, this one has 401"


def test_over_long_message_text_is_refused() -> None:
    reason = bad_body(body_of("CustomerNotified", message="m" * (MAX_TEXT + 1)))
    assert "field 'message' must be at most" in reason


@pytest.mark.parametrize(
    "occurred_at",
    ["yesterday", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "", 1714979289, None, "2024-05-06T25:00:00Z"],
)
def test_bad_occurred_at(occurred_at: Any) -> None:
    reason = bad_body(placed(occurred_at=occurred_at))
    assert reason.startswith("invalid OrderPlaced: ")
    assert "RFC 3339" in reason


@pytest.mark.parametrize("occurred_at", ["2024-05-06T07:08:09", "2024-05-06T07:08:09.123", "2024-05-06"])
def test_occurred_at_without_offset_is_refused(occurred_at: str) -> None:
    assert "has no UTC offset" in bad_body(placed(occurred_at=occurred_at))


@pytest.mark.parametrize(
    "occurred_at", ["2024-05-06T07:08:09Z", "2024-05-06T09:08:09+02:00", "2024-05-06T07:08:09.5+00:00"]
)
def test_occurred_at_with_offset_is_accepted_and_kept_as_written(occurred_at: str) -> None:
    assert decode(placed(occurred_at=occurred_at)).occurred_at == occurred_at


def test_event_from_body_raises_bad_message_too() -> None:
    with pytest.raises(BadMessage, match="unknown event_type"):
        event_from_body({"event_type": "Nope"})
    assert isinstance(event_from_body(placed()), OrderPlaced)


def test_bad_message_is_a_value_error() -> None:
    assert issubclass(BadMessage, ValueError)
    assert BadMessage("why").reason == "why"


# --- time helpers ------------------------------------------------------------------------------


def test_format_time_is_utc_with_z_and_milliseconds() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert format_time(moment) == "2024-05-06T07:08:09.123Z"


def test_format_time_converts_offsets_to_utc() -> None:
    moment = datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2024-05-06T07:08:09.000Z"


def test_parse_time_returns_aware_utc() -> None:
    parsed = parse_time("2024-05-06T09:08:09+02:00")
    assert parsed == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)


def test_format_parse_time_round_trip() -> None:
    moment = datetime(2030, 1, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert parse_time(format_time(moment)) == moment


@pytest.mark.parametrize("raw", [None, 0, "", "now", "2024-05-06T07:08:09"])
def test_parse_time_refuses(raw: Any) -> None:
    with pytest.raises(ValueError):
        parse_time(raw)


# --- derived ids -------------------------------------------------------------------------------


def test_derived_event_id_is_stable() -> None:
    first = derived_event_id("o-1", "OrderConfirmed")
    assert first == derived_event_id("o-1", "OrderConfirmed")
    assert uuid.UUID(first).version == 5
    assert str(uuid.UUID(first)) == first  # the canonical UUID text


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("o-1", "OrderConfirmed"), ("o-2", "OrderConfirmed")),
        (("o-1", "OrderConfirmed"), ("o-1", "OrderCancelled")),
        (("o-1", "SagaStepCompleted", "INVENTORY_RESERVATION"), ("o-1", "SagaStepCompleted", "PAYMENT_PROCESSING")),
        (("o-1",), ("o-1", "")),
        (("o-1", "InventoryReleased"), ("o-1", "InventoryReleased", "late", "sku-1")),
    ],
)
def test_derived_event_id_differs_per_parts(a: tuple[str, ...], b: tuple[str, ...]) -> None:
    assert derived_event_id(*a) != derived_event_id(*b)


def test_derived_event_id_is_injective_over_part_boundaries() -> None:
    """Order ids are chosen by clients and may contain '/': two different causes need two ids.

    Order "o-1"'s late release of sku "OrderCancelled" and order "o-1/InventoryReleased/late"'s
    cancellation are different events.
    """
    late_release = derived_event_id("o-1", "InventoryReleased", "late", "OrderCancelled")
    other_orders_cancel = derived_event_id("o-1/InventoryReleased/late", "OrderCancelled")
    assert late_release != other_orders_cancel


@pytest.mark.parametrize("parts", [("o-1", "OrderConfirmed"), ("ördér-ß", "StockReserved", "SKU-1"), ("",), ()])
def test_derived_event_id_is_the_uuid5_of_its_parts_as_earlier_releases_made_it(parts: tuple[str, ...]) -> None:
    """Ids derived before the faster code must come out the same, or a re-sent event would look new."""
    namespace = uuid.UUID("6f1c2a4e-8d0b-4a8e-9b61-3c7f2e5d9a10")
    assert derived_event_id(*parts) == str(uuid.uuid5(namespace, orjson.dumps(parts).decode()))
