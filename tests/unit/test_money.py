"""models.money: exact two-place decimals read from strings only, written without exponents."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models.money import CENT, ZERO, format_money, parse_money


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("19.99", Decimal("19.99")),
        ("0", Decimal("0.00")),
        ("0.00", Decimal("0.00")),
        ("7", Decimal("7.00")),
        ("7.5", Decimal("7.50")),
        ("007.10", Decimal("7.10")),
        ("999999999999999.99", Decimal("999999999999999.99")),  # 15 integer digits is the limit
    ],
)
def test_parse_money_reads_decimal_strings(raw: str, expected: Decimal) -> None:
    amount = parse_money(raw)
    assert amount == expected
    assert amount.as_tuple().exponent == -2, "always quantized to cents"


@pytest.mark.parametrize(
    "raw",
    [
        19.99,  # float: the contract forbids it
        20.0,
        20,  # int: money travels as a string
        True,
        None,
        Decimal("1.00"),
        ["1.00"],
        "-1.00",  # negative
        "-0",
        "+1.00",
        "1.999",  # three decimals
        "0.001",
        "1e2",  # exponent forms
        "1E2",
        "1.5e-1",
        "1.00E+0",
        "",
        " ",
        " 1.00",
        "1.00 ",
        "1,00",
        "1.",
        ".50",
        "NaN",
        "Infinity",
        "1_000",
        "0x10",
        "1000000000000000.00",  # 16 integer digits
    ],
)
def test_parse_money_refuses(raw: object) -> None:
    with pytest.raises(ValueError, match="decimal string"):
        parse_money(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "19.99\n",  # `$` in the pattern also matches before a trailing newline
        "\u0661\u0669.\u0669\u0669",  # Arabic-Indic digits: `\d` is Unicode-aware, Decimal() accepts them
    ],
)
def test_parse_money_refuses_text_that_only_looks_like_money(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_money(raw)


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("19.99"), "19.99"),
        (Decimal("19.9"), "19.90"),
        (Decimal("5"), "5.00"),
        (Decimal("0"), "0.00"),
        (Decimal("1E+3"), "1000.00"),  # no exponent in the output
        (Decimal("1.2E-1"), "0.12"),
        (Decimal("123456789012345.67"), "123456789012345.67"),
    ],
)
def test_format_money_writes_two_places_without_exponent(amount: Decimal, text: str) -> None:
    assert format_money(amount) == text


@pytest.mark.parametrize("text", ["0.00", "0.01", "19.99", "100.00", "999999999999999.99"])
def test_format_parse_round_trip(text: str) -> None:
    assert format_money(parse_money(text)) == text


def test_constants() -> None:
    assert Decimal("0.01") == CENT
    assert Decimal("0") == ZERO and format_money(ZERO) == "0.00"
