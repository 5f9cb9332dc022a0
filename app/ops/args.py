"""Arguments the way operators expect them: ISO 8601 times or durations, and one clear line on misuse."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta
from typing import NoReturn

from models.events import parse_time

_DURATION = re.compile(
    r"\AP(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?\Z"
)


class UsageError(Exception):
    """Arguments that parse but cannot be used (an unknown topic, an empty range): exit 2, one line."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (``prog: error: ...``) and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration of days, hours, minutes and seconds: ``PT1H``, ``P1DT12H``, ``PT90S``."""
    match = _DURATION.match(text.upper())
    if match is None or text.upper() in ("P", "PT"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT1H or P1D")
    parts = {name: int(value) for name, value in match.groupdict().items() if value}
    return timedelta(**parts)


def parse_moment(text: str, now: datetime) -> datetime:
    """A time given as RFC 3339 / ISO 8601 with its offset, or as a duration back from ``now``."""
    if text.upper().startswith("P"):
        return now - parse_duration(text)
    try:
        return parse_time(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO 8601 time with its offset (2026-01-01T10:00:00Z) "
                         "nor a duration back from now (PT1H)") from None
