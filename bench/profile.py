"""``make profile``: where one worker's time goes while it works through a backlog of orders.

Starts the local broker, writes the benchmark's seed and a backlog of orders, starts a worker and
samples it with py-spy for the whole run. Prints the functions with the most samples, by their own
time and including what they call, grouped by package, and writes the collapsed stacks (for a
flame graph) under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import RESULTS, _settings, backlog_outcomes, say, write_backlog  # noqa: E402
from devtools.devstack import start_worker, stop_process  # noqa: E402
from devtools.kafka_local import BrokerConfig, LocalKafka, free_port  # noqa: E402

#: Our own top-level packages; py-spy names a frame's file relative to its sys.path entry.
OURS = {"agents", "app", "config", "models", "tables"}


def package_of(frame: str) -> str:
    """The package a py-spy frame ``function (path:line)`` belongs to: its path's first component."""
    path = frame.rpartition("(")[2].partition(":")[0]
    first = path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")
    return f"streamsaga.{first}" if first in OURS else first


def summarize(collapsed: str, top: int) -> str:
    """Tables of the hottest functions (own and total samples) and packages, from py-spy's raw output."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f.replace(" (", " ", 1).rstrip(")") for f in stack.split(";")]
        samples += n
        own[frames[-1]] += n
        packages[package_of(stack.split(";")[-1])] += n
        for frame in set(frames):
            total[frame] += n
    if not samples:
        return "no samples"

    def block(title: str, counts: Counter[str]) -> list[str]:
        return [title] + [f"  {100 * n / samples:5.1f}%  {name}" for name, n in counts.most_common(top)]

    return "\n".join([f"{samples} samples", *block("own time by package:", packages),
                      *block("own time by function:", own), *block("total time by function:", total)])


def main(argv: list[str] | None = None) -> int:
    """Profile one worker through a backlog of orders."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=5_000)
    parser.add_argument("--guarantee", default="at_least_once")
    parser.add_argument("--linger-ms", type=float, default=None, help="the worker's producer linger")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    spy = Path(sys.executable).with_name("py-spy")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    with tempfile.TemporaryDirectory(prefix="streamsaga-profile-") as tmp:
        root = Path(tmp)
        say("starting Kafka")
        with LocalKafka(BrokerConfig(port=free_port(), controller_port=free_port(), data_dir=root / "kafka",
                                     heap="1g")) as kafka:
            extra = {} if args.linger_ms is None else {"producer_linger_ms": args.linger_ms}
            settings = _settings(kafka.bootstrap, root, "profile", processing_guarantee=args.guarantee, **extra)
            write_backlog(settings, args.orders, root)
            worker = start_worker(settings, root / "worker.log")
            sampler = subprocess.Popen([str(spy), "record", "--pid", str(worker.pid), "--rate", str(args.rate),
                                        "--format", "raw", "--output", str(out), "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                started = time.monotonic()
                times = backlog_outcomes(settings, args.orders, 1800, "sagas")
                elapsed = time.monotonic() - started
            finally:
                sampler.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C, not on SIGTERM
                sampler.wait(30)
                stop_process(worker)
    span = max(times.values()) - min(times.values()) if times else 0.0
    say(f"{len(times)} sagas in {elapsed:.1f} s since the worker was ready ({len(times) / max(span, 1e-3):.0f}/s "
        f"between the first and last outcome); stacks in {out.relative_to(ROOT)}")
    print(summarize(out.read_text(), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
