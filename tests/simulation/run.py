"""Run the simulation for many seeds: ``.venv/bin/python tests/simulation/run.py --seeds 1000``.

Each seed is a whole run (many orders contending for stock and wallets, with crashes, duplicates,
stalls and timeouts) checked against the contract's guarantees. A failing seed is shrunk to the
shortest event list that still fails, saved under .run/simulation/, and printed with a trace.

    run.py --seeds N [--orders M] [--start K] [--jobs J]   many seeds, with a progress bar
    run.py --seed S [--orders M] [--trace]                 one seed
    run.py --replay .run/simulation/seed-S.json [--trace]  a saved (shrunk) scenario
    run.py ... --broken NAME                               with a deliberately broken handler
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_TESTS.parent), str(_TESTS)]  # the project (models) and tests/ (simulation)

from simulation.broken import BROKEN  # noqa: E402
from simulation.harness import Progress, default_jobs, report, run_scenario, run_seeds  # noqa: E402
from simulation.invariants import summary  # noqa: E402
from simulation.scenario import Scenario, generate  # noqa: E402
from simulation.simulator import REAL  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("agents").setLevel(logging.CRITICAL)  # the executor's lines are in the trace already
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds (default 1000)")
    parser.add_argument("--start", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--orders", type=int, default=200, help="orders per seed (default 200)")
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--replay", type=Path, help="run a scenario saved by a failing seed")
    parser.add_argument("--mode", choices=["internal", "external"], help="force the payment mode")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="processes (default: cores, at most 4)")
    parser.add_argument("--broken", choices=sorted(BROKEN), help="plug in a deliberately broken handler")
    parser.add_argument("--trace", action="store_true", help="print the whole trace of a single run")
    parser.add_argument("--shrink-seconds", type=float, default=60.0, help="time to shrink a failure (default 60)")
    parser.add_argument("--max-reports", type=int, default=3, help="failing seeds to shrink and print (default 3)")
    args = parser.parse_args(argv)
    impl = BROKEN[args.broken] if args.broken else REAL

    if args.replay or args.seed is not None:
        if args.replay:
            scenario = Scenario.from_json(args.replay.read_bytes())
        else:
            scenario = generate(args.seed, args.orders, args.mode)
        result, problems = run_scenario(scenario, impl, trace=True)
        if args.trace:
            print("\n".join(result.trace))
        print(f"seed {scenario.seed}: {len(scenario.inputs)} inputs, {result.stats}, outcomes {summary(result)}")
        for problem in problems:
            print(f"  {problem}")
        print("OK" if not problems else f"FAILED: {len(problems)} problems")
        return 1 if problems else 0

    seeds = range(args.start, args.start + args.seeds)
    print(f"simulating {args.seeds} seeds x {args.orders} orders in {args.jobs} processes"
          f"{f' with the broken handler {args.broken}' if args.broken else ''}", file=sys.stderr)
    started = time.perf_counter()
    progress = Progress(len(seeds))
    failures = []
    deliveries = 0
    for outcome in run_seeds(seeds, args.orders, impl, args.jobs, args.mode):
        progress.update(outcome.failed)
        deliveries += outcome.deliveries
        if outcome.failed:
            failures.append(outcome)
    progress.close()
    elapsed = time.perf_counter() - started
    print(f"{len(seeds)} seeds, {len(failures)} failed, {deliveries} deliveries in {elapsed:.1f} s")
    failures.sort(key=lambda outcome: outcome.seed)
    if failures:
        print(f"failing seeds: {' '.join(str(outcome.seed) for outcome in failures)}")
    for outcome in failures[: args.max_reports]:
        print()
        print(report(outcome, impl, args.shrink_seconds))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
