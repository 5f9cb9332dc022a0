"""Money as exact decimals with two places, never floats."""

from __future__ import annotations

import re
from decimal import Decimal

_MONEY = re.compile(r"\A[0-9]{1,15}(\.[0-9]{1,2})?\Z")
MAX_MONEY = Decimal("999999999999999.99")
CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def parse_money(raw: object) -> Decimal:
    """Read a non-negative decimal string such as ``"19.99"``; floats are refused."""
    if not isinstance(raw, str) or not _MONEY.match(raw):
        raise ValueError(f"must be a decimal string with at most two places, got {raw!r}")
    return Decimal(raw).quantize(CENT)


def format_money(amount: Decimal) -> str:
    """Write money the way the contract does: two places, no exponent."""
    return f"{amount.quantize(CENT):f}"
