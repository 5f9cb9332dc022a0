"""Run seeds, shrink a failing one to a short event list, and print a trace that replays it."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from simulation.invariants import check, summary
from simulation.scenario import Input, Scenario, generate
from simulation.simulator import REAL, Handlers, Result, simulate

ROOT = Path(__file__).resolve().parents[2]
REPLAYS = ROOT / ".run" / "simulation"


@dataclass(frozen=True)
class Outcome:
    """How one seed went."""

    seed: int
    problems: tuple[str, ...]
    deliveries: int
    seconds: float
    scenario: Scenario
    stats: dict[str, int]
    endings: dict[str, int]  # how the orders ended: COMPLETED, OUT_OF_STOCK, PAYMENT_DECLINED, TIMED_OUT

    @property
    def failed(self) -> bool:
        return bool(self.problems)


def run_scenario(scenario: Scenario, impl: Handlers = REAL, trace: bool = False) -> tuple[Result, list[str]]:
    """Simulate and check."""
    result = simulate(scenario, impl, trace)
    return result, check(result)


def run_seed(
    seed: int, orders: int, impl: Handlers = REAL, payment_mode: str | None = None, guarantee: str | None = None
) -> Outcome:
    """Generate the seed's scenario, run it and check it."""
    started = time.perf_counter()
    scenario = generate(seed, orders, payment_mode, guarantee)
    result, problems = run_scenario(scenario, impl)
    seconds = time.perf_counter() - started
    return Outcome(seed, tuple(problems), result.stats["deliveries"], seconds, scenario, result.stats, summary(result))


def _run_seed_star(args: tuple[int, int, Handlers, str | None]) -> Outcome:
    return run_seed(*args)


def run_seeds(
    seeds: Iterable[int], orders: int, impl: Handlers = REAL, jobs: int = 1, payment_mode: str | None = None
) -> Iterator[Outcome]:
    """Run seeds, in ``jobs`` processes; outcomes come as they finish (in seed order when jobs is 1)."""
    work = [(seed, orders, impl, payment_mode) for seed in seeds]
    if jobs <= 1:
        yield from map(_run_seed_star, work)
        return
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        yield from pool.imap_unordered(_run_seed_star, work, chunksize=1)


def default_jobs() -> int:
    """Processes to use: the cores this process may run on, at most 4."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


# --- shrinking ---------------------------------------------------------------------------------


def codes(problems: Iterable[str]) -> set[str]:
    """The guarantee each problem breaks ("G1", "G3", "DLQ", ...)."""
    return {problem.split(":")[0].split()[0] for problem in problems}


@dataclass
class Shrunk:
    """The shortest failing scenario found, and what it cost to find."""

    original: Scenario
    scenario: Scenario
    problems: list[str]
    runs: int
    seconds: float


def shrink(scenario: Scenario, impl: Handlers = REAL, budget_s: float = 60.0, max_runs: int = 400) -> Shrunk:
    """Cut a failing scenario down while it still breaks one of the same guarantees.

    First the faults and the topology are simplified where the failure stays, then delta
    debugging drops whole groups of inputs (an order and its resends, one funding, ...), then
    single inputs. The seed stays: it drives the scheduler and the faults of every attempt.
    """
    started = time.perf_counter()
    _, problems = run_scenario(scenario, impl)
    target = codes(problems)
    runs = 1
    best, best_problems = scenario, problems

    def fails(candidate: Scenario) -> bool:
        nonlocal runs, best, best_problems
        if runs >= max_runs or time.perf_counter() - started > budget_s:
            return False
        runs += 1
        _, found = run_scenario(candidate, impl)
        if found and codes(found) & target:
            best, best_problems = candidate, found
            return True
        return False

    config = scenario.config
    for change in (
        {"jump_p": 0.0}, {"stall_p": 0.0}, {"dup_p": 0.0}, {"crash_p": 0.0},
        {"workers": 1}, {"partitions": 1}, {"public_partitions": 1},
    ):
        simpler = dataclasses.replace(config, **change)  # type: ignore[arg-type]
        if simpler != config and fails(dataclasses.replace(best, config=simpler)):
            config = simpler
    groups: dict[str, list[Input]] = {}
    for each in best.inputs:
        groups.setdefault(each.group, []).append(each)
    kept = _ddmin(list(groups.values()), lambda chosen: fails(best.with_inputs(_flat(chosen))))
    _ddmin([[each] for each in _flat(kept)], lambda chosen: fails(best.with_inputs(_flat(chosen))))
    return Shrunk(scenario, best, best_problems, runs, time.perf_counter() - started)


def _flat(groups: list[list[Input]]) -> list[Input]:
    return sorted((each for group in groups for each in group), key=lambda each: each.at)


def _ddmin(items: list[list[Input]], fails: Callable[[list[list[Input]]], bool]) -> list[list[Input]]:
    """Zeller's delta debugging, on complements: drop chunks while the rest still fails."""
    chunks = 2
    while len(items) >= 2:
        size = math.ceil(len(items) / chunks)
        for start in range(0, len(items), size):
            rest = items[:start] + items[start + size:]
            if rest and fails(rest):
                items = rest
                chunks = max(chunks - 1, 2)
                break
        else:
            if chunks >= len(items):
                break
            chunks = min(len(items), chunks * 2)
    return items


# --- reporting ---------------------------------------------------------------------------------


def save_replay(scenario: Scenario, name: str) -> Path:
    """Write the scenario where ``run.py --replay`` reads it."""
    REPLAYS.mkdir(parents=True, exist_ok=True)
    path = REPLAYS / f"{name}.json"
    path.write_bytes(scenario.to_json())
    return path


def report(outcome: Outcome, impl: Handlers = REAL, shrink_budget_s: float = 60.0, trace_lines: int = 80) -> str:
    """What a failing seed did wrong, shrunk to its shortest event list, with the commands to replay it."""
    config = outcome.scenario.config
    lines = [
        f"FAILED seed {outcome.seed} ({len(outcome.scenario.inputs)} inputs, {config})",
        *(f"  {problem}" for problem in outcome.problems[:12]),
    ]
    if len(outcome.problems) > 12:
        lines.append(f"  ... and {len(outcome.problems) - 12} more")
    lines.append(f"  replay the seed: .venv/bin/python tests/simulation/run.py --seed {outcome.seed}"
                 f" --orders {_orders(outcome.scenario)}")
    shrunk = shrink(outcome.scenario, impl, budget_s=shrink_budget_s)
    path = save_replay(shrunk.scenario, f"seed-{outcome.seed}")
    result, problems = run_scenario(shrunk.scenario, impl, trace=True)
    lines += [
        f"shrunk to {len(shrunk.scenario.inputs)} of {len(outcome.scenario.inputs)} inputs"
        f" in {shrunk.runs} runs ({shrunk.seconds:.1f} s): seed {outcome.seed}, {shrunk.scenario.config}",
        *(f"  {problem}" for problem in problems[:12]),
        f"  replay it: .venv/bin/python tests/simulation/run.py --replay {path.relative_to(ROOT)} --trace",
        "the shortest event list found that still fails:",
        *(f"  {each.describe()}" for each in shrunk.scenario.inputs),
        f"what happened (the last {min(trace_lines, len(result.trace))} of {len(result.trace)} lines of its trace):",
        *(f"  {line}" for line in result.trace[-trace_lines:]),
    ]
    return "\n".join(lines)


def _orders(scenario: Scenario) -> int:
    return len({each.key for each in scenario.inputs if each.group.startswith("order:")})


class Progress:
    """A tqdm progress bar of seeds on stderr, with how many failed."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.failed = 0
        self.bar = tqdm(total=total, unit="seed", file=stream or sys.stderr, dynamic_ncols=True)

    def update(self, failed: bool) -> None:
        self.failed += failed
        self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
