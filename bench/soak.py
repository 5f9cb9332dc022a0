"""Soak test of crash recovery: N runs of a scenario load with one worker SIGKILLed half-way and started again.

Each run has its own app id, topics and data directories on one local broker this script starts.
It records per run: orders ended, stuck orders (no OrderConfirmed/OrderCancelled), duplicate
terminal events (by record and by distinct event id) and seconds from the restart to all ended.
A run with stuck orders keeps its worker logs, a py-spy dump of each live worker, the stuck
sagas' views and the group's lag per partition under --keep-dir. Exits 1 if any order was stuck.

example:
  .venv/bin/python bench/soak.py --runs 6 --orders 3000
  .venv/bin/python bench/soak.py --runs 3 --workers 2 --guarantees exactly_once --keep-dir /tmp/soak
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from app.topic_names import all_topic_names  # noqa: E402
from config.settings import GUARANTEES, Settings  # noqa: E402
from devtools.kafka_local import BrokerConfig, LocalKafka, free_port  # noqa: E402
from support.scenario import RICH_FUNDS, Mix, build_orders, seed, terminal, wait_for_seed  # noqa: E402
from support.topics import read_topic, setup_topics, wait_quiet, write_events  # noqa: E402
from support.worker import Worker, new_settings  # noqa: E402

#: Log lines counted per run, by a short label.
MARKERS = {"overlap": "Timer commit is overlapping", "rebalance-again": "Recovery rebalancing again",
           "traceback": "Traceback"}


@dataclasses.dataclass
class Run:
    """What one run measured."""

    number: int
    guarantee: str
    orders: int
    delay: float | None = None  # restart delay used
    killed_at: int = 0
    ended: int = 0
    stuck: list[str] = dataclasses.field(default_factory=list)
    copies: int = 0  # terminal records beyond the first per order
    copied_orders: int = 0  # orders with more than one terminal record
    extra_ids: int = 0  # distinct terminal event ids beyond one per order (should be 0)
    wrong: int = 0  # orders whose outcome is not the expected one
    restart_to_done_s: float | None = None
    restart_ready_s: float | None = None
    markers: Counter[str] = dataclasses.field(default_factory=Counter)
    kept: Path | None = None


def say(text: str) -> None:
    """Progress on stderr."""
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def scaled_mix(orders: int) -> Mix:
    """The scenario's mix (60% ok, 10% out of stock, 10% broke, 12% scarce, 8% tight) at ``orders`` orders."""
    ok, oos, broke, scarce = (round(orders * share) for share in (0.6, 0.1, 0.1, 0.12))
    return Mix(ok=ok, out_of_stock=oos, broke=broke, scarce=scarce, tight=orders - ok - oos - broke - scarce)


def ended_orders(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Terminal bodies by order id, read_committed under exactly_once (what count_ended counts)."""
    isolation = "read_committed" if settings.processing_guarantee == "exactly_once" else "read_uncommitted"
    return terminal(read_topic(settings.bootstrap_servers, settings.topic("order-events"), isolation))


def spawn(worker: Worker) -> None:
    """Start the worker as devstack.start_worker does, without waiting: a restart that never gets ready stays up."""
    streamsaga = str(Path(sys.executable).with_name("streamsaga"))
    worker.process = subprocess.Popen(
        [streamsaga, "worker", "-l", worker.settings.log_level], stdout=worker.log_path.open("ab"),
        stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **worker.settings.to_env()})


def ready(worker: Worker) -> bool:
    """The worker answers /health with 200."""
    try:
        return worker.get("/health", timeout=2)[0] == 200
    except OSError:
        return False


async def group_lag(settings: Settings) -> list[str]:
    """Committed offset of the app's group against the end offset, per partition of the topics it consumes."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=settings.group_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - topics created by someone else
        names = [n for n in all_topic_names(settings) if not n.endswith(".DLQ") and not n.endswith("saga-events")]
        tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(tps)
        lines = []
        for tp in tps:
            committed = await consumer.committed(tp)
            if ends[tp] != (committed or 0):
                lines.append(f"  {tp.topic}[{tp.partition}] committed={committed} end={ends[tp]} "
                             f"lag={ends[tp] - (committed or 0)}")
        return lines or ["  every consumed partition is committed to its end"]
    finally:
        await consumer.stop()


def diagnose(run: Run, settings: Settings, workers: list[Worker], keep: Path) -> None:
    """While the workers still run: thread stacks (py-spy) and asyncio tasks (SIGUSR1, mode's dump into the worker
    log), the stuck sagas' views, the group's lag; logs are copied later."""
    keep.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    for worker in workers:
        if worker.process is not None and worker.process.poll() is None:
            os.kill(worker.process.pid, signal.SIGUSR1)
        if worker.process is not None and worker.process.poll() is None and spy.exists():
            dump = subprocess.run([str(spy), "dump", "--pid", str(worker.process.pid)], capture_output=True,
                                  text=True, timeout=60)
            (keep / f"{worker.log_path.stem}.py-spy.txt").write_text(dump.stdout + dump.stderr)
    live = next((w for w in workers if w.process is not None and w.process.poll() is None), workers[0])
    views = []
    for order_id in run.stuck[:10]:
        try:
            views.append(f"  {order_id}: {live.get(f'/orders/{order_id}', timeout=10)}")
        except OSError as error:
            views.append(f"  {order_id}: {error!r}")
    lag = asyncio.run(group_lag(settings))
    time.sleep(2)  # the SIGUSR1 dumps reach the logs
    (keep / "diagnosis.txt").write_text("\n".join(["stuck: " + " ".join(run.stuck), "views:", *views, "lag:", *lag]))
    print(f"run {run.number}: {len(run.stuck)} stuck orders, e.g. {run.stuck[:10]}\nsaga views:", *views,
          "consumer lag (committed vs end):", *lag, sep="\n", flush=True)


def one_run(number: int, args: argparse.Namespace, bootstrap: str, root: Path) -> Run:
    """Seed, load, kill at half, restart after the delay, wait for every outcome, count copies."""
    name = f"soak{number}-{int(time.time())}"
    guarantee = args.guarantees[(number - 1) % len(args.guarantees)]
    settings = new_settings(bootstrap, root, name, processing_guarantee=guarantee, partitions=args.partitions,
                            saga_timeout_s=args.saga_timeout, session_timeout_s=args.session_timeout,
                            log_level="info")
    run_dir = root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    workers = [Worker(settings, run_dir / "worker-a.log")]
    if args.workers == 2:
        other = dataclasses.replace(settings, data_dir=root / f"{name}-b", web_port=free_port())
        workers.append(Worker(other, run_dir / "worker-b.log"))
    mix = scaled_mix(args.orders)
    orders, expected = build_orders(random.Random(number), mix)
    spend: Counter[str] = Counter()
    for o in orders:
        spend[o.customer_id] += o.total_amount if expected.get(o.order_id) == "CONFIRMED" else 0
    if max(spend.values()) > RICH_FUNDS - 100:
        raise SystemExit(f"--orders {args.orders} is too many for the scenario's funds: outcomes would not be exact")
    run = Run(number, guarantee, len(orders))
    victim = workers[0]
    try:
        setup_topics(settings)
        write_events(settings, seed())
        workers[0].start()
        wait_for_seed(workers[0])
        for worker in workers[1:]:
            worker.start()
        while not all(ready(w) for w in workers):
            time.sleep(0.5)
        write_events(settings, orders)
        restarted = time.monotonic()
        if not args.no_kill:
            while len(ended_orders(settings)) < len(orders) // 2:
                time.sleep(0.5)
            victim.kill()
            run.killed_at = len(ended_orders(settings))
            say(f"run {number}: SIGKILLed {victim.log_path.stem} at {run.killed_at}/{len(orders)} ended")
            delay = run.delay = args.restart_delay[(number - 1) % len(args.restart_delay)]
            if delay >= 0:
                time.sleep(delay)
                spawn(victim)
            restarted = time.monotonic()
        deadline, ready_seen = restarted + args.timeout, False
        while time.monotonic() < deadline:
            run.ended = len(ended_orders(settings))
            if not ready_seen and victim.process is not None and victim.process.poll() is None and ready(victim):
                ready_seen, run.restart_ready_s = True, round(time.monotonic() - restarted, 1)
            if run.ended >= len(orders):
                run.restart_to_done_s = round(time.monotonic() - restarted, 1)
                break
            time.sleep(1.0)
        if run.restart_to_done_s is not None:  # let re-sent copies arrive before counting them
            wait_quiet(bootstrap, [settings.topic("order-events")], 120)
        ended = ended_orders(settings)
        run.ended = len(ended)
        run.stuck = [o.order_id for o in orders if o.order_id not in ended]
        run.copies = sum(len(bodies) - 1 for bodies in ended.values())
        run.copied_orders = sum(1 for bodies in ended.values() if len(bodies) > 1)
        run.extra_ids = sum(len({b["event_id"] for b in bodies}) - 1 for bodies in ended.values())
        got = {oid: b[0]["event_type"] if b[0]["event_type"] == "OrderConfirmed" else b[0].get("reason")
               for oid, b in ended.items()}
        run.wrong = sum(1 for oid, want in expected.items() if oid in got
                        and got[oid] != ("OrderConfirmed" if want == "CONFIRMED" else want))
        if not run.stuck and Counter(got.values()) != mix.expected_kinds():
            run.wrong = max(run.wrong, 1)
        if run.stuck or args.keep_logs:
            run.kept = Path(args.keep_dir) / name
            run.kept.mkdir(parents=True, exist_ok=True)
        if run.stuck and run.kept is not None:
            diagnose(run, settings, workers, run.kept)
    finally:
        for worker in workers:
            worker.stop()
    for worker in workers:
        text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
        run.markers.update({label: text.count(m) for label, m in MARKERS.items() if m in text})
        if run.kept is not None:
            shutil.copy(worker.log_path, run.kept / worker.log_path.name)
    if run.kept is not None:
        print(f"run {number}: kept {sorted(str(p) for p in run.kept.iterdir())}", flush=True)
    if not args.keep_data:
        for worker in workers:
            shutil.rmtree(worker.settings.data_dir, ignore_errors=True)
    return run


def summary(runs: list[Run]) -> str:
    """One line per run."""
    head = ("run", "guarantee", "delay", "orders", "kill@", "ended", "stuck", "copies", "orders×2+", "extra ids",
            "wrong", "ready s", "done s", "log markers")
    rows: list[tuple[str, ...]] = [head]
    for r in runs:
        cells = (r.number, r.guarantee, r.delay, r.orders, r.killed_at, r.ended, len(r.stuck), r.copies,
                 r.copied_orders, r.extra_ids, r.wrong, r.restart_ready_s, r.restart_to_done_s)
        markers = ", ".join(f"{k}:{v}" for k, v in sorted(r.markers.items())) or "-"
        rows.append(tuple("-" if cell is None else str(cell) for cell in cells) + (markers,))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def _guarantees(text: str) -> list[str]:
    """``--guarantees``: a comma-separated list of processing guarantees."""
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    wrong = [part for part in chosen if part not in GUARANTEES]
    if wrong or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(GUARANTEES)}, not {text!r}")
    return chosen


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--orders", type=int, default=3000, help="orders per run (scenario mix, exact outcomes)")
    parser.add_argument("--guarantees", type=_guarantees, default=list(GUARANTEES),
                        help="comma-separated; the runs take them in turn (default: both)")
    parser.add_argument("--workers", type=int, choices=(1, 2), default=1, help="2: a group of two, the first killed")
    parser.add_argument("--restart-delay", type=lambda text: [float(d) for d in text.split(",")], default=[10.0],
                        help="seconds; negative: never restart; a list (4,6,8) cycles over the runs")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds from the restart for all to end")
    parser.add_argument("--saga-timeout", type=float, default=300.0, help="STREAMSAGA_SAGA_TIMEOUT_S")
    parser.add_argument("--session-timeout", type=float, default=15.0, help="STREAMSAGA_SESSION_TIMEOUT_S")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--no-kill", action="store_true",
                        help="no kill: copies of an undisturbed run (times count from the orders written)")
    parser.add_argument("--keep-dir", default=str(ROOT / ".run" / "soak"), help="where stuck runs' logs go")
    parser.add_argument("--keep-logs", action="store_true", help="keep every run's worker logs, not only stuck ones")
    parser.add_argument("--keep-data", action="store_true", help="keep each run's data directories until the end")
    parser.add_argument("--work-dir", default=None, help="broker and worker data (default: a temporary dir)")
    parser.add_argument("--heap", default="512m", help="broker heap")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start a broker, do the runs, print the table; 1 if any order was stuck."""
    args = parse(argv)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # leader elections on fresh topics retry noisily
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="soak-", dir=args.work_dir) as tmp:
        root = Path(tmp)
        say(f"starting Kafka; {args.runs} runs of {args.orders} orders, {'/'.join(args.guarantees)}, "
            f"{args.workers} worker(s)")
        config = BrokerConfig(port=free_port(), controller_port=free_port(), data_dir=root / "kafka", heap=args.heap)
        with LocalKafka(config) as kafka:
            for number in range(1, args.runs + 1):
                started = time.monotonic()
                run = one_run(number, args, kafka.bootstrap, root)
                runs.append(run)
                print(f"[soak] run {number}/{args.runs} ({run.guarantee}): {run.ended}/{run.orders} ended, "
                      f"{len(run.stuck)} stuck, kill at {run.killed_at}, {run.copies} copies "
                      f"({run.extra_ids} extra ids, {run.wrong} wrong), "
                      f"ready {run.restart_ready_s} s / done {run.restart_to_done_s} s after the restart, "
                      f"{dict(run.markers)}, {time.monotonic() - started:.0f} s", flush=True)
    print(f"\n{args.workers} worker(s), restart after {args.restart_delay} s, "
          f"saga timeout {args.saga_timeout} s\n{summary(runs)}")
    return 1 if any(r.stuck for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
