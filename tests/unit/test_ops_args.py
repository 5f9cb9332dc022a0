"""Operator command arguments: ISO 8601 times and durations; misuse is one line and exit status 2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.ops.args import parse_duration, parse_moment
from app.ops.cli import run

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("PT1H", timedelta(hours=1)), ("P1D", timedelta(days=1)), ("PT90S", timedelta(seconds=90)),
    ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)), ("pt15m", timedelta(minutes=15)),
])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["P", "PT", "1H", "PT1.5H", "P1W", "PTH"])
def test_what_is_not_a_duration_says_so(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601 duration"):
        parse_duration(text)


def test_a_moment_is_a_time_with_its_offset_or_a_duration_back_from_now() -> None:
    assert parse_moment("PT2H", NOW) == NOW - timedelta(hours=2)
    assert parse_moment("2026-12-01T10:00:00+01:00", NOW) == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither"):
        parse_moment("2026-12-01T10:00:00", NOW)  # no offset: which ten o'clock?


@pytest.mark.parametrize("argv", [
    ["replay"], ["replay", "--topic", "order-events", "--from-offset", "x"], ["dlq"], ["dlq", "forget"],
    ["nonsense"], ["load", "--orders", "many"],
])
def test_bad_arguments_are_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("streamsaga") and ": error: " in err[0], err


@pytest.mark.parametrize("command", ["replay", "dlq", "tables", "load", "topics", "schemas"])
def test_every_command_s_help_shows_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run([command, "--help"])
    assert exited.value.code == 0
    assert f"examples:\n  streamsaga {command}" in capsys.readouterr().out
