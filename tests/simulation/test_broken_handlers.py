"""The simulator catches real bugs: deliberately broken handlers and executors fail within a few seeds.

A seed counts as a catch when the broken handlers break the guarantee the bug is about and the
real handlers keep every guarantee on the very same scenario, so the catch is the broken
handler's doing.
"""

from __future__ import annotations

import pytest

from simulation.broken import BROKEN
from simulation.harness import codes, run_scenario, run_seed
from simulation.scenario import generate

ORDERS = 100

#: (broken handler, payment mode (None: as the seed says), guarantees it must break, seeds to try)
ALOS, EOS = "at_least_once", "exactly_once"
#: (broken code, payment mode and guarantee (None: as the seed says), guarantees it must break, seeds to try);
#: duplicates re-send their outputs only under at_least_once, so those bugs show there
CASES = [
    ("drop-outputs-on-duplicate", None, ALOS, {"G1", "G2", "G3"}, 20),
    ("saga-drops-outputs-on-duplicate", None, ALOS, {"G1", "G2", "G3"}, 20),
    ("late-payment-not-refunded", None, None, {"G3"}, 10),
    ("late-payment-not-refunded", "internal", None, {"G3"}, 20),
    ("stock-reserves-duplicates-again", None, ALOS, {"G2"}, 5),
    ("wallet-charges-duplicates-again", "internal", ALOS, {"G3"}, 5),
    ("saga-ignores-timeouts", "external", None, {"G1", "G5"}, 5),
    ("executor-writes-one-table", "external", None, {"G1", "G5"}, 5),
    ("executor-drops-bad-messages", None, None, {"DLQ"}, 5),
    ("sends-outside-the-transaction", None, EOS, {"EOS"}, 10),
    ("tables-survive-an-abort", None, EOS, {"G1", "G2", "G3", "G5"}, 20),
    ("zombies-not-fenced", None, EOS, {"EOS", "G2", "G3"}, 20),
    ("counts-only-on-change", None, ALOS, {"W"}, 20),
    ("counts-every-delivery", None, ALOS, {"W"}, 20),
]


def first_catch(
    name: str, mode: str | None, guarantee: str | None, expected: set[str], seeds: int
) -> tuple[int, list[str]] | None:
    """The first seed on which the broken code breaks an expected guarantee and the real code does not."""
    for seed in range(seeds):
        outcome = run_seed(seed, ORDERS, BROKEN[name], mode, guarantee)
        if codes(outcome.problems) & expected:
            _, real = run_scenario(generate(seed, ORDERS, mode, guarantee))
            if not real:
                return seed, list(outcome.problems)
    return None


@pytest.mark.parametrize(
    ("name", "mode", "guarantee", "expected", "seeds"), CASES,
    ids=[f"{name}-{mode or 'any'}-{guarantee or 'any'}" for name, mode, guarantee, *_ in CASES],
)
def test_the_simulator_catches_broken_code(
    name: str, mode: str | None, guarantee: str | None, expected: set[str], seeds: int
) -> None:
    caught = first_catch(name, mode, guarantee, expected, seeds)
    kind = f"{name} ({mode or 'any mode'}, {guarantee or 'any guarantee'})"
    assert caught is not None, f"{kind} kept {sorted(expected)} on {seeds} seeds of {ORDERS} orders"
    seed, problems = caught
    print(f"{kind} caught at seed {seed}: {problems[:3]}")
