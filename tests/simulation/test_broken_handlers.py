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
CASES = [
    ("drop-outputs-on-duplicate", None, {"G1", "G2", "G3"}, 20),
    ("saga-drops-outputs-on-duplicate", None, {"G1", "G2", "G3"}, 20),
    ("late-payment-not-refunded", None, {"G3"}, 10),
    ("late-payment-not-refunded", "internal", {"G3"}, 20),
    ("stock-reserves-duplicates-again", None, {"G2"}, 5),
    ("wallet-charges-duplicates-again", "internal", {"G3"}, 5),
    ("saga-ignores-timeouts", "external", {"G1", "G5"}, 5),
    ("executor-writes-one-table", "external", {"G1", "G5"}, 5),
    ("executor-drops-bad-messages", None, {"DLQ"}, 5),
]


def first_catch(name: str, mode: str | None, expected: set[str], seeds: int) -> tuple[int, list[str]] | None:
    """The first seed on which the broken handler breaks an expected guarantee and the real ones do not."""
    for seed in range(seeds):
        outcome = run_seed(seed, ORDERS, BROKEN[name], mode)
        if codes(outcome.problems) & expected:
            _, real = run_scenario(generate(seed, ORDERS, mode))
            if not real:
                return seed, list(outcome.problems)
    return None


@pytest.mark.parametrize(
    ("name", "mode", "expected", "seeds"), CASES, ids=[f"{name}-{mode or 'any'}" for name, mode, *_ in CASES]
)
def test_the_simulator_catches_a_broken_handler(name: str, mode: str | None, expected: set[str], seeds: int) -> None:
    caught = first_catch(name, mode, expected, seeds)
    kind = f"{name} ({mode or 'any mode'})"
    assert caught is not None, f"{kind} kept {sorted(expected)} on {seeds} seeds of {ORDERS} orders"
    seed, problems = caught
    print(f"{kind} caught at seed {seed}: {problems[:3]}")
