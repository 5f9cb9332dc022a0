"""A changed copy of a frozen record without ``dataclasses.replace``'s work on every call.

The saga, stock, wallet and window records are copied with a change a few dozen times per order;
``dataclasses.replace`` looks up the class's fields and runs ``__init__`` each time, which was the
largest single cost of the saga's own code (a ninth of it, in the no-Kafka handler loop).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, cast

R = TypeVar("R")
_FIELDS: dict[type[Any], frozenset[str]] = {}


def evolve(record: R, **changes: Any) -> R:
    """``dataclasses.replace(record, **changes)`` for a dataclass with an instance dict and no ``__post_init__``."""
    cls = type(record)
    names = _FIELDS.get(cls)
    if names is None:
        if not dataclasses.is_dataclass(cls) or "__slots__" in vars(cls) or hasattr(cls, "__post_init__"):
            raise TypeError(f"{cls.__name__} is not a plain dataclass record: use dataclasses.replace")
        names = _FIELDS[cls] = frozenset(field.name for field in dataclasses.fields(cls) if field.init)
    if not changes.keys() <= names:
        raise TypeError(f"{cls.__name__} has no field {sorted(changes.keys() - names)[0]!r}")
    copy = cast(R, object.__new__(cls))
    copy.__dict__.update(record.__dict__)
    copy.__dict__.update(changes)
    return copy
