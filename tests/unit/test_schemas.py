"""The generated JSON Schemas reject what the worker dead-letters and accept what it takes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from models.events import EVENT_TYPES, BadMessage, event_from_body
from models.schemas import all_schemas

SCHEMAS = all_schemas()
ORDER: dict[str, Any] = {
    "event_id": "e-1", "event_type": "OrderPlaced", "occurred_at": "2026-01-01T10:00:00Z", "version": 1,
    "order_id": "o-1", "customer_id": "c-1",
    "items": [{"sku": "A", "quantity": 2, "unit_price": "1.50"}], "total_amount": "3.00",
}
FUNDS: dict[str, Any] = {"event_id": "e-2", "event_type": "FundsAdded", "occurred_at": "2026-01-01T10:00:00+02:00",
                         "version": 1, "customer_id": "c-1", "amount": "10.00"}
CANCELLED: dict[str, Any] = {"event_id": "e-3", "event_type": "OrderCancelled", "occurred_at": "2026-01-01T10:00:00Z",
                             "version": 1, "order_id": "o-1", "customer_id": "c-1", "reason": "TIMEOUT"}
USER: dict[str, Any] = {"event_id": "e-4", "event_type": "UserRegistered", "occurred_at": "2026-01-01T10:00:00Z",
                        "version": 1, "customer_id": "c-1", "name": "Ann", "email": "ann@example.com"}


def changed(body: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copied = copy.deepcopy(body)
    change(copied)
    return copied


def line(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body["items"][0].update(fields)


BAD = {
    "negative quantity": changed(ORDER, line(quantity=-1)),
    "zero quantity": changed(ORDER, line(quantity=0)),
    "quantity too large": changed(ORDER, line(quantity=1_000_001)),
    "quantity as text": changed(ORDER, line(quantity="2")),
    "money as a number": changed(ORDER, lambda b: b.update(total_amount=3.0)),
    "money with three places": changed(ORDER, line(unit_price="1.505")),
    "negative money": changed(ORDER, line(unit_price="-1.50")),
    "missing order id": changed(ORDER, lambda b: b.pop("order_id")),
    "missing event id": changed(ORDER, lambda b: b.pop("event_id")),
    "blank customer id": changed(ORDER, lambda b: b.update(customer_id="   ")),
    "id too long": changed(ORDER, lambda b: b.update(order_id="o" * 201)),
    "null id": changed(ORDER, lambda b: b.update(order_id=None)),
    "an id with a NUL character": changed(ORDER, lambda b: b.update(customer_id="c\x00-1")),
    "a sku with a NUL character": changed(ORDER, line(sku="\x00A")),
    "no items": changed(ORDER, lambda b: b.update(items=[])),
    "too many lines": changed(ORDER, lambda b: b.update(items=b["items"] * 401, total_amount="1203.00")),
    "a line that is not an object": changed(ORDER, lambda b: b.update(items=["A"])),
    "a newer version": changed(ORDER, lambda b: b.update(version=2)),
    "version as text": changed(ORDER, lambda b: b.update(version="1")),
    "version zero": changed(ORDER, lambda b: b.update(version=0)),
    "time without its offset": changed(ORDER, lambda b: b.update(occurred_at="2026-01-01T10:00:00")),
    "time that is not a time": changed(ORDER, lambda b: b.update(occurred_at="yesterday")),
    "funds of nothing": changed(FUNDS, lambda b: b.update(amount="0.00")),
    "a reason the contract does not name": changed(CANCELLED, lambda b: b.update(reason="BORED")),
    "an email without @": changed(USER, lambda b: b.update(email="ann.example.com")),
}
GOOD = {
    "an order": ORDER,
    "an order with an unknown extra field": changed(ORDER, lambda b: b.update(coupon="X")),
    "funds with an offset": FUNDS,
    "a cancellation": CANCELLED,
    "a registration": USER,
    "an order of 400 lines": changed(ORDER, lambda b: b.update(items=b["items"] * 400, total_amount="1200.00")),
}


def rejected_by_worker(body: dict[str, Any]) -> bool:
    try:
        event_from_body(body)
    except BadMessage:
        return True
    return False


def rejected_by_schema(body: dict[str, Any]) -> bool:
    return not Draft202012Validator(SCHEMAS[body["event_type"]],
                                    format_checker=Draft202012Validator.FORMAT_CHECKER).is_valid(body)


def test_there_is_a_valid_schema_for_every_event_of_the_contract() -> None:
    assert set(SCHEMAS) == set(EVENT_TYPES) and len(SCHEMAS) == 20
    for schema in SCHEMAS.values():
        Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", BAD)
def test_what_the_worker_dead_letters_the_schema_rejects(name: str) -> None:
    body = BAD[name]
    assert rejected_by_worker(body), "the corpus holds only what the worker refuses"
    assert rejected_by_schema(body)


@pytest.mark.parametrize("name", GOOD)
def test_what_the_worker_takes_the_schema_accepts(name: str) -> None:
    body = GOOD[name]
    assert not rejected_by_worker(body) and not rejected_by_schema(body)


def test_a_total_that_is_not_the_sum_of_its_lines_is_for_the_worker_to_refuse() -> None:
    """The one rule a JSON Schema cannot say: the schema takes it, the worker dead-letters it."""
    body = changed(ORDER, lambda b: b.update(total_amount="4.00"))
    assert rejected_by_worker(body) and not rejected_by_schema(body)
