"""models.order_request: a POST /orders body becomes an OrderPlaced, or the full list of what is wrong."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from models.events import MAX_ID, MAX_ORDER_LINES, BadMessage, OrderLine, OrderPlaced, decode_event
from models.order_request import order_from_request

NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


ID_RULE = f"must be a non-empty string of at most {MAX_ID} characters, without NUL"


def item(sku: str = "sku-1", quantity: Any = 2, unit_price: Any = "19.99") -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "unit_price": unit_price}


def request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"customer_id": "c-1", "items": [item(), item("sku-2", 1, "5.00")]}
    body.update(overrides)
    return body


def order_of(body: Any) -> OrderPlaced:
    result = order_from_request(body, NOW)
    assert isinstance(result, OrderPlaced), result
    return result


def errors_of(body: Any) -> list[str]:
    result = order_from_request(body, NOW)
    assert isinstance(result, list), result
    assert result, "a refused body has at least one error"
    return result


# --- valid bodies ------------------------------------------------------------------------------


def test_valid_body_gives_an_order_with_the_computed_total() -> None:
    order = order_of(request(order_id="o-1"))
    assert order.order_id == "o-1"
    assert order.customer_id == "c-1"
    assert order.items == (
        OrderLine(sku="sku-1", quantity=2, unit_price=Decimal("19.99")),
        OrderLine(sku="sku-2", quantity=1, unit_price=Decimal("5.00")),
    )
    assert order.total_amount == Decimal("44.98")
    assert order.occurred_at == "2024-05-06T07:08:09.123Z"
    uuid.UUID(order.event_id)
    order.validate()  # the event is consistent by itself


def test_order_id_is_generated_when_absent_or_null() -> None:
    first = order_of(request())
    second = order_of(request(order_id=None))
    assert uuid.UUID(first.order_id) and uuid.UUID(second.order_id)
    assert first.order_id != second.order_id
    assert first.event_id != second.event_id
    assert first.order_id != first.event_id


def test_each_request_gets_a_new_event_id_even_for_the_same_order_id() -> None:
    assert order_of(request(order_id="o-1")).event_id != order_of(request(order_id="o-1")).event_id


def test_the_event_decodes_back_to_itself() -> None:
    order = order_of(request(order_id="o-1", customer_id="Zoë 李"))
    assert decode_event(order.encode()) == order


def test_unknown_fields_are_ignored() -> None:
    body = request(order_id="o-1", coupon="SPRING")
    body["items"][0]["colour"] = "red"
    assert order_of(body).total_amount == Decimal("44.98")


def test_prices_with_fewer_places_and_repeated_skus() -> None:
    order = order_of(request(items=[item("a", 3, "0.1"), item("a", 1, "2")]))
    assert order.total_amount == Decimal("2.30")
    assert [line.sku for line in order.items] == ["a", "a"]


def test_zero_prices_make_a_zero_total() -> None:
    assert order_of(request(items=[item(unit_price="0.00")])).total_amount == Decimal("0.00")


def test_exactly_max_lines_is_allowed() -> None:
    order = order_of(request(items=[item(f"sku-{i}", 1, "1.00") for i in range(MAX_ORDER_LINES)]))
    assert len(order.items) == MAX_ORDER_LINES
    assert order.total_amount == Decimal(MAX_ORDER_LINES)


def test_ids_up_to_the_id_limit_are_allowed() -> None:
    order = order_of(request(order_id="o" * MAX_ID, customer_id="c" * MAX_ID, items=[item(sku="s" * MAX_ID)]))
    assert decode_event(order.encode()) == order


# --- refused bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], ["customer_id"], "order", 42, True])
def test_non_object_body(body: Any) -> None:
    assert errors_of(body) == ["body must be a JSON object"]


def test_empty_object_lists_every_missing_thing() -> None:
    assert errors_of({}) == [f"customer_id {ID_RULE}", "items must be a non-empty list"]


def test_every_error_is_collected_at_once() -> None:
    body = {
        "customer_id": "",
        "order_id": 7,
        "items": [
            item(sku="", quantity=0, unit_price=19.99),
            "not an object",
            item(),  # a good line among bad ones
            item(quantity="3"),
            item(unit_price="1.999"),
        ],
    }
    errors = errors_of(body)
    assert errors[:2] == [f"customer_id {ID_RULE}", f"order_id {ID_RULE} when given"]
    assert f"items[0].sku {ID_RULE}" in errors
    assert "items[0].quantity must be an integer from 1 to 1000000" in errors
    assert any(e.startswith("items[0].unit_price must be a decimal string") for e in errors)
    assert "items[1] must be an object with sku, quantity and unit_price" in errors
    assert not any(e.startswith("items[2]") for e in errors)
    assert "items[3].quantity must be an integer from 1 to 1000000" in errors
    assert any(e.startswith("items[4].unit_price") for e in errors)
    assert len(errors) == 8


@pytest.mark.parametrize("customer_id", [None, "", "   ", 42, ["c-1"], "c" * (MAX_ID + 1), "c\x00-1"])
def test_bad_customer_id(customer_id: Any) -> None:
    assert errors_of(request(customer_id=customer_id)) == [f"customer_id {ID_RULE}"]


def test_missing_customer_id() -> None:
    body = request()
    del body["customer_id"]
    assert errors_of(body) == [f"customer_id {ID_RULE}"]


@pytest.mark.parametrize("order_id", ["", " ", 42, {"id": 1}, "o" * (MAX_ID + 1)])
def test_bad_order_id(order_id: Any) -> None:
    assert errors_of(request(order_id=order_id)) == [f"order_id {ID_RULE} when given"]


@pytest.mark.parametrize("items", [None, [], {}, "sku-1", 3, {"0": item()}])
def test_items_must_be_a_non_empty_list(items: Any) -> None:
    assert errors_of(request(items=items)) == ["items must be a non-empty list"]


def test_too_many_lines() -> None:
    errors = errors_of(request(items=[item(f"sku-{i}", 1, "1.00") for i in range(MAX_ORDER_LINES + 1)]))
    assert errors == [f"items may have at most {MAX_ORDER_LINES} lines"]


@pytest.mark.parametrize("quantity", [0, -1, "2", 2.0, 2.5, True, False, None])
def test_bad_quantity(quantity: Any) -> None:
    errors = errors_of(request(items=[item(quantity=quantity)]))
    assert errors == ["items[0].quantity must be an integer from 1 to 1000000"]


@pytest.mark.parametrize("unit_price", [19.99, 20, "19.999", "-1.00", "1e2", "", None, "abc"])
def test_bad_unit_price(unit_price: Any) -> None:
    errors = errors_of(request(items=[item(unit_price=unit_price)]))
    assert len(errors) == 1
    assert errors[0].startswith("items[0].unit_price must be a decimal string with at most two places")


@pytest.mark.parametrize("sku", [None, "", " ", 5, "s" * (MAX_ID + 1)])
def test_bad_sku(sku: Any) -> None:
    assert errors_of(request(items=[item(sku=sku)])) == [f"items[0].sku {ID_RULE}"]


def test_missing_line_fields() -> None:
    errors = errors_of(request(items=[{}]))
    assert errors[:2] == [
        f"items[0].sku {ID_RULE}",
        "items[0].quantity must be an integer from 1 to 1000000",
    ]
    assert errors[2].startswith("items[0].unit_price")
    assert len(errors) == 3


@pytest.mark.parametrize(
    "items",
    [
        [item(quantity=1000, unit_price="999999999999999.99")],  # total has 18 integer digits
        [item(quantity=10**17, unit_price="999999999999999.99")],  # total beyond the decimal context
    ],
)
def test_an_accepted_order_can_always_be_written_and_read_back(items: list[dict[str, Any]]) -> None:
    """POST /orders answers 202 only for an event the application can encode and decode itself.

    Otherwise the order is accepted but then goes to the dead-letter topic (or the handler crashes),
    and the client never gets an OrderConfirmed/OrderCancelled for its order id.
    """
    result = order_from_request(request(items=items), NOW)
    if isinstance(result, list):
        assert result, "refused with a reason"
        return
    try:
        again = decode_event(result.encode())
    except (BadMessage, ArithmeticError) as exc:
        pytest.fail(f"accepted order cannot be re-read: {type(exc).__name__}: {exc}")
    assert again == result
