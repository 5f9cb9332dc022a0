"""Under exactly_once, table state left by a crash is dropped; a clean stop or at_least_once keeps it."""

from __future__ import annotations

import atexit
import functools
from pathlib import Path

import pytest

from app import local_state
from app.local_state import CLEAN_MARKER, distrust_table_state, prepare_table_state


@pytest.fixture(autouse=True)
def no_exit_hooks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Collect the exit hook instead of registering it with the interpreter."""
    hooks: list[object] = []
    monkeypatch.setattr(atexit, "register", lambda hook, *args: hooks.append(functools.partial(hook, *args)))
    monkeypatch.setattr(local_state, "_distrusted", False)
    return hooks


def _tables(tmp_path: Path) -> Path:
    tables = tmp_path / "worker"
    (tables / "v1" / "tables").mkdir(parents=True)
    (tables / "v1" / "tables" / "sagas-0.db").write_text("state")
    return tables


def test_crash_under_exactly_once_wipes_the_tables(tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    prepare_table_state(tables, exactly_once=True)
    assert tables.is_dir() and list(tables.iterdir()) == []


def test_clean_stop_under_exactly_once_keeps_the_tables(tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    (tables / CLEAN_MARKER).touch()
    prepare_table_state(tables, exactly_once=True)
    assert (tables / "v1" / "tables" / "sagas-0.db").read_text() == "state"
    assert not (tables / CLEAN_MARKER).exists(), "a run in progress is not a clean stop"


def test_at_least_once_keeps_the_tables_after_a_crash(tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    prepare_table_state(tables, exactly_once=False)
    assert (tables / "v1" / "tables" / "sagas-0.db").exists()


def test_the_exit_hook_marks_a_clean_stop(tmp_path: Path, no_exit_hooks: list[object]) -> None:
    tables = tmp_path / "worker"
    prepare_table_state(tables, exactly_once=True)
    (hook,) = no_exit_hooks
    hook()  # type: ignore[operator]
    assert (tables / CLEAN_MARKER).exists()


def test_a_fenced_run_does_not_mark_its_stop_clean(tmp_path: Path, no_exit_hooks: list[object]) -> None:
    tables = tmp_path / "worker"
    prepare_table_state(tables, exactly_once=True)
    distrust_table_state()  # its transaction was aborted after its tables took the changes
    (hook,) = no_exit_hooks
    hook()  # type: ignore[operator]
    assert not (tables / CLEAN_MARKER).exists()
