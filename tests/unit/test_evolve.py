"""``evolve`` makes what ``dataclasses.replace`` made, for the records the saga copies, and refuses the rest."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from models.effects import Incoming
from models.evolve import evolve
from models.stats import Bucket
from models.stock import Stock
from models.wallet import Wallet


@pytest.mark.parametrize(("record", "changes"), [
    (Stock(sku="SKU-1", available=5, holds={"o-1": 2}), {"available": 3, "holds": {}}),
    (Wallet(customer_id="c-1"), {"balance": Decimal("7.50")}),
    (Bucket(placed=2), {"placed": 3, "last_input": 9}),
])
def test_a_copy_with_changes_equals_what_dataclasses_replace_makes(record: object, changes: dict[str, object]) -> None:
    copied = evolve(record, **changes)
    assert copied == dataclasses.replace(record, **changes)  # type: ignore[type-var]
    assert copied is not record
    assert all(getattr(copied, name) == value for name, value in changes.items())


def test_the_original_is_left_as_it_was() -> None:
    stock = Stock(sku="SKU-1", available=5)
    evolve(stock, available=1)
    assert stock.available == 5


def test_an_unknown_field_is_refused_as_dataclasses_replace_refuses_it() -> None:
    with pytest.raises(TypeError, match="no field 'availble'"):
        evolve(Stock(sku="SKU-1"), availble=1)


def test_a_record_with_slots_is_left_to_dataclasses_replace() -> None:
    with pytest.raises(TypeError, match="use dataclasses.replace"):
        evolve(Incoming("t", 0, 1, None, None, 0.0), offset=2)
