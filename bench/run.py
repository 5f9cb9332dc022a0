"""``make bench``: measure in one run, on one local broker, a raw aiokafka ceiling, saga throughput,
latency at half the maximum rate, recovery, and the worker's CPU and peak RSS. Prints a table and
writes JSON under ``bench/results/``."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.admin import ensure_topics  # noqa: E402
from app.topic_names import all_topic_names, changelog_names, input_topic_names  # noqa: E402
from bench import kafka_io, procstat, workload  # noqa: E402
from config.settings import Settings  # noqa: E402
from devtools.demo import produce  # noqa: E402
from devtools.devstack import start_worker, stop_process  # noqa: E402
from devtools.kafka_local import (  # noqa: E402
    BrokerConfig,
    LocalCluster,
    LocalKafka,
    cluster_configs,
    free_port,
    free_ports_in_a_row,
)
from models.stock import Stock  # noqa: E402
from models.topics import INPUT_TOPICS  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def say(text: str) -> None:
    """Progress on stderr, so the table on stdout stays clean."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def progress(label: str, total: int) -> Any:
    """A callback moving a tqdm bar to ``done`` of ``total``; the bar closes when it gets there."""
    bar = tqdm(total=total, desc=f"  {label}", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)

    def show(done: int) -> None:
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return show


@dataclass
class Report:
    """Everything measured, for the table and the JSON file."""

    machine: dict[str, Any] = field(default_factory=dict)
    ceiling: dict[str, Any] = field(default_factory=dict)
    faust_floor: dict[str, Any] = field(default_factory=dict)
    quix_floor: dict[str, Any] = field(default_factory=dict)
    default_guarantee: str = field(default_factory=lambda: Settings().processing_guarantee)
    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the default guarantee's throughput with the windows of /stats turned off (STREAMSAGA_STATS=0)
    without_stats: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    recovery: dict[str, Any] = field(default_factory=dict)
    #: the default guarantee with 1, 2, ... workers on this machine, keyed by the number of workers
    scale_out: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the default guarantee's backlog on a local cluster (3 replicas, min.insync.replicas 2), one worker
    cluster: dict[str, Any] = field(default_factory=dict)
    #: the default guarantee's backlog with every order on one sku and one wallet (a flash sale)
    hot_key: dict[str, Any] = field(default_factory=dict)


async def _ceiling(bootstrap: str, count: int, size: int) -> dict[str, Any]:
    """A plain aiokafka consume -> produce pass-through of ``count`` messages of ``size`` bytes."""
    source, sink = "bench-ceiling-in", "bench-ceiling-out"
    value = b"x" * size
    await kafka_io.create_topics(bootstrap, [source, sink])
    await kafka_io.bulk_write(bootstrap, source, ((f"k{n}".encode(), value) for n in range(count)))
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id="bench-ceiling",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await consumer.start()
    await producer.start()
    show = progress("ceiling", count)
    moved, started = 0, 0.0
    try:
        while moved < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            if batch and not started:
                started = time.perf_counter()
            for messages in batch.values():
                for message in messages:
                    await producer.send(sink, value=message.value, key=message.key)
                    moved += 1
            await consumer.commit()
            show(moved)
        await producer.flush()
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
        await consumer.stop()
    return {"messages": count, "message_bytes": size, "seconds": round(elapsed, 2),
            "messages_per_s": round(count / elapsed)}


def faust_floor(bootstrap: str, root: Path, count: int, size: int) -> dict[str, Any]:
    """The same pass-through as one Faust agent with the worker's app and settings (bench/faust_passthrough.py)."""
    floor = _passthrough(bootstrap, root, "faust", count, size,
                         ["faust_passthrough.py", "worker", "-l", "warn"], f"kafka://{bootstrap}")
    return {**floor, "processing_guarantee": Settings.from_env().processing_guarantee}  # the worker's, as it runs


def quix_floor(bootstrap: str, root: Path, count: int, size: int) -> dict[str, Any]:
    """The same pass-through in Quix Streams (bench/quix_passthrough.py): what Faust's cost is measured against."""
    return _passthrough(bootstrap, root, "quix", count, size, ["quix_passthrough.py"], bootstrap)


def _passthrough(bootstrap: str, root: Path, name: str, count: int, size: int, argv: list[str],
                 broker: str) -> dict[str, Any]:
    """Run one pass-through program on ``count`` waiting messages; its rate and the cores it used."""
    source, sink = f"bench-{name}-in", f"bench-{name}-out"
    asyncio.run(kafka_io.create_topics(bootstrap, [source, sink]))
    asyncio.run(kafka_io.bulk_write(bootstrap, source, ((f"k{n}".encode(), b"x" * size) for n in range(count))))
    env = {**os.environ, "BENCH_BROKER": broker, "BENCH_APP_ID": f"bench-{name}-floor",
           "BENCH_SOURCE": source, "BENCH_SINK": sink, "BENCH_DATA_DIR": str(root / f"{name}-floor")}
    log = (root / f"{name}-floor.log").open("ab")
    worker = subprocess.Popen([sys.executable, str(ROOT / "bench" / argv[0]), *argv[1:]],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    show = progress(f"{name} pass-through", count)
    at_first: list[tuple[int, float, float]] = []  # (records seen, CPU seconds, wall) once records flow

    def watch(seen: int) -> None:
        if worker.poll() is not None:
            raise RuntimeError(f"the {name} pass-through exited with {worker.returncode}; see {log.name}")
        if seen and not at_first:
            at_first.append((seen, procstat.cpu_seconds(worker.pid), time.monotonic()))
        show(seen)

    try:
        span = asyncio.run(kafka_io.arrival_span(bootstrap, sink, count, 600, watch))
        seen, cpu_first, wall_first = at_first[0]
        cpu = procstat.cpu_seconds(worker.pid) - cpu_first  # the start-up's imports and joins left out
        wall = time.monotonic() - wall_first
    finally:
        stop_process(worker)
    return {"messages": count, "message_bytes": size, "seconds": round(span, 2),
            "messages_per_s": round(count / max(span, 1e-3)), "worker_cores": round(cpu / max(wall, 1e-3), 2),
            "cpu_us_per_message": round(cpu / max(count - seen, 1) * 1e6)}


def _settings(bootstrap: str, root: Path, name: str, **overrides: Any) -> Settings:
    """An isolated app on the shared broker."""
    return Settings(broker=";".join(f"kafka://{address}" for address in bootstrap.split(",")),
                    app_id=f"bench-{name}", topic_prefix=f"{name}.",
                    partitions=8, data_dir=root / name, web_port=free_port(), demo_orders=False,
                    log_level="warn", **overrides)


def _url(settings: Settings, path: str) -> str:
    return f"{settings.web_url}{path}"


def _get(settings: Settings, path: str, timeout: float = 60) -> Any:
    with urllib.request.urlopen(_url(settings, path), timeout=timeout) as response:
        return orjson.loads(response.read())


def _wait_seeded(settings: Settings, timeout: float = 120) -> None:
    """Until every seeded wallet and sku is visible."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for customer in workload.RICH:
                _get(settings, f"/wallets/{customer}")
            for sku in workload.SKUS:
                _get(settings, f"/inventory/{sku}")
            return
        except Exception:  # noqa: BLE001 - not there yet
            time.sleep(0.5)
    raise TimeoutError("seed data did not arrive")


def write_backlog(settings: Settings, count: int, root: Path, hot: bool = False) -> str:
    """Topics and the seed, applied by a worker that then stops, and ``count`` orders of the fixed mix waiting
    for the next worker; the order topic.

    A worker reads its topics side by side and Kafka keeps no order across them: an order handled before
    its sku's stock or its customer's funds arrived would fail, and the run would measure another mix.
    """
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, workload.seed_events(count)))
    say("applying the seed")
    worker = start_worker(settings, root / f"worker-seed-{settings.app_id}.log")
    try:
        _wait_seeded(settings)
    finally:
        stop_process(worker)
    return write_orders(settings, count, progress("orders", count), hot)


def write_orders(settings: Settings, count: int, show: Callable[[int], None] | None = None, hot: bool = False) -> str:
    """``count`` orders of the fixed mix (``hot``: on one sku and wallet) on the order topic, as fast as the
    client goes; the topic."""
    topic = settings.topic("order-events")
    asyncio.run(kafka_io.bulk_write(settings.bootstrap_servers, topic, ((o.order_id.encode(), o.encode())
                                    for o in workload.orders(count, hot=hot)), show))
    return topic


def backlog_outcomes(settings: Settings, count: int, timeout: float, label: str) -> dict[str, float]:
    """Until every order of the backlog has its outcome (or ``timeout``); order id -> outcome time."""
    wanted = {workload.order_id(n) for n in range(count)}
    return asyncio.run(kafka_io.terminal_times(settings.bootstrap_servers, settings.topic("order-events"), wanted,
                                               timeout, progress(label, count)))


def throughput(bootstrap: str, root: Path, guarantee: str, count: int, timeout: float,
               commit_interval: float | None, stats: bool = True, replicas: int = 1, hot: bool = False
               ) -> dict[str, Any]:
    """Completed sagas/s with a backlog of ``count`` orders waiting when the worker starts (``hot``: every
    order on one sku and one wallet)."""
    name = (f"{guarantee.replace('_', '')}{'' if stats else '-nostats'}{'' if replicas == 1 else f'-r{replicas}'}"
            f"{'-hot' if hot else ''}")
    settings = _settings(bootstrap, root, f"tput-{name}", processing_guarantee=guarantee,
                         commit_interval_s=commit_interval, stats=stats, replication_factor=replicas)
    label = f"{guarantee}{'' if stats else ', windows off'}{', one sku and wallet' if hot else ''}"
    say(f"{label}: a backlog of {count} orders")
    write_backlog(settings, count, root, hot)
    written = asyncio.run(kafka_io.end_offsets(bootstrap, all_topic_names(settings)))  # the seed and the orders
    worker = start_worker(settings, root / f"worker-{name}.log")
    try:
        cpu_before = procstat.cpu_seconds(worker.pid)
        wall_before = time.monotonic()
        times = backlog_outcomes(settings, count, timeout, f"sagas ({label})")
        cpu = procstat.cpu_seconds(worker.pid) - cpu_before
        wall = time.monotonic() - wall_before
        rss = procstat.peak_rss_mb(worker.pid)
    finally:
        stop_process(worker)
    records = asyncio.run(kafka_io.end_offsets(bootstrap, all_topic_names(settings) + changelog_names(settings)))
    if len(times) < count:
        return {"completed": len(times), "orders": count, "stalled_after_s": timeout,
                "worker_cpu_s": round(cpu, 1), "worker_peak_rss_mb": round(rss)}
    first, last = min(times.values()), max(times.values())
    span = max(last - first, 1e-3)
    changelogs = set(changelog_names(settings))
    app_records = sum(n - written.get(name, 0) for name, n in records.items() if name not in changelogs)
    consumed = sum(records[name] for name in input_topic_names(settings))
    # what the app wrote to the public topics ingress reads: its own outputs, which the consumer skips
    skipped = sum(records[settings.topic(name)] - written.get(settings.topic(name), 0) for name in INPUT_TOPICS)
    return {
        "completed": len(times), "orders": count, "seconds": round(span, 2),
        "sagas_per_s": round(count / span), "app_records_written": app_records,
        # per saga, the seed's few hundred events included: every record the agents read (the orders too),
        # every record the app wrote to a topic, and every changelog record of its tables
        "consumed_per_saga": round(consumed / count, 2), "produced_per_saga": round(app_records / count, 2),
        "handled_per_saga": round((consumed - skipped) / count, 2),
        "changelog_per_saga": round(sum(records[name] for name in changelogs) / count, 2),
        "records_per_s": round(app_records / span), "worker_cpu_s": round(cpu, 1),
        "worker_cores": round(cpu / wall, 2), "worker_peak_rss_mb": round(rss),
        "commit_interval_s": settings.commit_interval, "wall_s": round(wall, 1),
        "sagas_per_s_from_start": round(count / wall),
    }


def on_a_cluster(root: Path, brokers: int, guarantee: str, args: argparse.Namespace) -> dict[str, Any]:
    """The same backlog on ``brokers`` local brokers (after the single one has stopped), every topic replicated."""
    say(f"cluster: {brokers} brokers, {min(brokers, 3)} replicas of every topic")
    configs = cluster_configs(brokers, first_port=free_ports_in_a_row(brokers),
                              controller_ports=[free_port() for _ in range(brokers)], data_dir=root / "cluster",
                              heap="512m")
    with LocalCluster(configs) as cluster:
        run = throughput(cluster.bootstrap, root, guarantee, args.orders, args.timeout, args.commit_interval,
                         replicas=min(brokers, 3))
    return {"brokers": brokers, "replicas": min(brokers, 3), **run}


def scale_out(bootstrap: str, broker_pid: int | None, root: Path, guarantee: str, count: int, workers: int,
              timeout: float) -> dict[str, Any]:
    """Sagas/s with ``workers`` workers of one app, started and ready before ``count`` orders arrive at once.

    Beside the workers' CPU it reports the broker's, which shares the machine's cores with them.
    """
    settings = _settings(bootstrap, root, f"scale-{workers}w", processing_guarantee=guarantee)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, workload.seed_events(count)))
    members = [replace(settings, data_dir=root / f"scale-{workers}w-{n}", web_port=free_port()) for n in range(workers)]
    say(f"{guarantee}, {workers} worker(s): starting them, then {count} orders at once")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for n, member in enumerate(members):
            processes.append(start_worker(member, root / f"worker-scale-{workers}w-{n}.log"))
        _wait_seeded(members[0])
        _wait_settled(members)
        pids = [p.pid for p in processes] + ([broker_pid] if broker_pid else [])
        cpu_before, wall_before = [procstat.cpu_seconds(pid) for pid in pids], time.monotonic()
        write_orders(settings, count)
        times = backlog_outcomes(settings, count, timeout, f"sagas ({workers} worker(s))")
        wall = time.monotonic() - wall_before
        cores = [(procstat.cpu_seconds(pid) - before) / wall for pid, before in zip(pids, cpu_before, strict=True)]
    finally:
        for process in processes:
            stop_process(process)
    if len(times) < count:
        return {"completed": len(times), "orders": count, "stalled_after_s": timeout}
    span = max(max(times.values()) - min(times.values()), 1e-3)
    return {"workers": workers, "orders": count, "seconds": round(span, 2), "sagas_per_s": round(count / span),
            "worker_cores": [round(c, 2) for c in cores[:workers]],
            "broker_cores": round(cores[workers], 2) if broker_pid else None}


def _wait_settled(members: list[Settings], timeout: float = 120) -> None:
    """Until every worker answers /health with 200: the group has settled and each owns its partitions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if all(urllib.request.urlopen(_url(m, "/health"), timeout=5).status == 200 for m in members):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("the workers did not settle")


def latency(bootstrap: str, root: Path, rate: float, seconds: float, commit_interval: float | None,
            warmup: float) -> dict[str, Any]:
    """OrderPlaced -> its outcome readable by a read_committed reader, at a steady ``rate`` orders/s for ``seconds``.

    The first ``warmup`` seconds of orders at the same rate are not measured: a worker just started takes
    a few seconds to reach its steady latency (on 2026-12-03, 1-2.5 s for 5 s, then under 0.8 s).
    """
    settings = _settings(bootstrap, root, "latency", commit_interval_s=commit_interval)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, workload.seed_events(0)))
    worker = start_worker(settings, root / "worker-latency.log")
    try:
        _wait_seeded(settings)
        if warmup > 0:
            say(f"warm-up: {warmup:g} s of orders at {rate:.0f}/s, not measured")
            asyncio.run(_paced(settings, rate, warmup))
        sent, done = asyncio.run(_watched(settings, rate, seconds, first=int(rate * warmup) if warmup > 0 else 0))
    finally:
        stop_process(worker)
    readable = sorted((done[o][0] - sent[o]) * 1000 for o in done)
    written = sorted((done[o][1] - sent[o]) * 1000 for o in done)
    q, w = statistics.quantiles(readable, n=100), statistics.quantiles(written, n=100)
    return {"rate_per_s": round(rate), "orders": len(sent), "completed": len(done),
            "commit_interval_s": settings.commit_interval, "warmup_s": warmup,
            "p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "p99_ms": round(q[98], 1),
            "max_ms": round(readable[-1], 1),
            "written_p50_ms": round(w[49], 1), "written_p99_ms": round(w[98], 1)}


async def _watched(settings: Settings, rate: float, seconds: float, first: int
                   ) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Paced orders, and when each outcome became readable to a ``read_committed`` reader (and was written)."""
    watch = kafka_io.OutcomeWatch(settings.bootstrap_servers, settings.topic("order-events"))
    await watch.start()
    try:
        sent = await _paced(settings, rate, seconds, first=first)
        await watch.wait_for(set(sent), 120)
        return sent, {o: watch.seen[o] for o in sent if o in watch.seen}
    finally:
        await watch.stop()


async def _paced(settings: Settings, rate: float, seconds: float, first: int = 0) -> dict[str, float]:
    """Send orders (from number ``first`` of the mix) at ``rate``/s; order id -> wall time it was sent."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=0)
    await producer.start()
    sent: dict[str, float] = {}
    total = int(rate * seconds)
    show = progress(f"paced orders at {rate:.0f}/s", total)
    start = time.monotonic()
    try:
        for n, order in enumerate(itertools.islice(workload.orders(first + total, seed=9), first, None)):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[order.order_id] = time.time()
            await producer.send(settings.topic("order-events"), value=order.encode(), key=order.order_id.encode())
            if n % 100 == 0:
                show(n)
        await producer.flush()
        show(total)
    finally:
        await producer.stop()
    return sent


def recovery(bootstrap: str, root: Path, keys: int) -> dict[str, Any]:
    """Restart with the data directory kept, and rebuild from changelogs with it deleted, at ``keys`` keys."""
    settings = _settings(bootstrap, root, "recovery")
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, workload.seed_events(0)))
    changelog = f"{settings.group_id}-stock-changelog"
    say(f"writing {keys} stock rows straight into {changelog} (as if {keys} skus had been stocked)")
    # A first worker applies the seed, so the probe orders after each restart find stock and money.
    worker = start_worker(settings, root / "worker-recovery.log")
    _wait_seeded(settings)
    stop_process(worker)
    rows = ((f"BULK-{n:07d}".encode(), Stock(sku=f"BULK-{n:07d}", available=5).to_json()) for n in range(keys))
    asyncio.run(kafka_io.bulk_write(bootstrap, changelog, rows, progress("changelog rows", keys)))

    rebuild = _timed_start(settings, root / "worker-rebuild.log", wipe=True)
    kept = _timed_start(settings, root / "worker-kept.log", wipe=False)
    return {"keys": keys, "rebuild_ready_s": rebuild["ready_s"],
            "rebuild_rows_per_s": round(keys / max(rebuild["ready_s"], 1e-3)),
            "rebuild_first_order_s": rebuild["first_order_s"],
            "kept_ready_s": kept["ready_s"], "kept_first_order_s": kept["first_order_s"],
            "worker_peak_rss_mb": max(rebuild["rss_mb"], kept["rss_mb"])}


def _timed_start(settings: Settings, log: Path, wipe: bool) -> dict[str, float]:
    """Start a worker; seconds until ready and until a new order has its outcome."""
    worker_dir = settings.data_dir / "worker"
    if wipe and worker_dir.exists():
        shutil.rmtree(worker_dir)
    label = "rebuild from changelogs" if wipe else "restart with data kept"
    say(f"recovery: {label}")
    started = time.monotonic()
    worker = start_worker(settings, log)
    try:
        ready = time.monotonic() - started
        order = next(workload.orders(1, seed=int(started)))
        order = replace(order, order_id=f"probe-{int(started * 1000)}")
        asyncio.run(produce(settings, [order]))
        _get(settings, f"/orders/{order.order_id}?wait=60", timeout=90)
        first = time.monotonic() - started
        rss = procstat.peak_rss_mb(worker.pid)
    finally:
        stop_process(worker)
    return {"ready_s": round(ready, 2), "first_order_s": round(first, 2), "rss_mb": round(rss)}


def table(report: Report) -> str:
    """The figures as a plain text table."""
    rows = [("ceiling: aiokafka pass-through", f"{report.ceiling['messages_per_s']:,} msg/s "
             f"({report.ceiling['message_bytes']} B)")]
    if report.faust_floor:
        floor = report.faust_floor
        rows.append((f"Faust pass-through ({floor['processing_guarantee']})", f"{floor['messages_per_s']:,} msg/s, "
                     f"{floor['worker_cores']} cores, {floor['cpu_us_per_message']} us CPU per message"))
    if report.quix_floor:
        quix = report.quix_floor
        rows.append(("Quix Streams pass-through", f"{quix['messages_per_s']:,} msg/s, "
                     f"{quix['worker_cores']} cores, {quix['cpu_us_per_message']} us CPU per message"))
    for guarantee, t in report.throughput.items():
        if "sagas_per_s" in t:
            ratio = t["records_per_s"] / report.ceiling["messages_per_s"]
            rows += [(f"sagas ({guarantee})", f"{t['sagas_per_s']:,} sagas/s over {t['orders']:,} orders (first to last"
                      f" outcome); {t['sagas_per_s_from_start']:,}/s from the worker's start ({t['wall_s']} s), commit"
                      f" interval {t['commit_interval_s']} s"),
                     (f"  records written ({guarantee})", f"{t['records_per_s']:,}/s = {ratio:.0%} of ceiling"),
                     (f"  records per saga ({guarantee})", f"{t['consumed_per_saga']} consumed "
                      f"({t.get('handled_per_saga', '?')} reaching an agent), {t['produced_per_saga']} produced, "
                      f"{t['changelog_per_saga']} changelog"),
                     (f"  worker ({guarantee})", f"{t['worker_cores']} cores, peak RSS {t['worker_peak_rss_mb']} MiB")]
        else:
            rows.append((f"sagas ({guarantee})",
                         f"INCOMPLETE: {t['completed']}/{t['orders']} ended within {t['stalled_after_s']}s"))
    alos, eos = (report.throughput.get(g, {}).get("sagas_per_s_from_start") for g in ("at_least_once", "exactly_once"))
    if alos and eos:
        rows.append(("exactly_once / at_least_once", f"{eos / alos:.2f} from the start (target: at least 0.8)"))
    with_stats = report.throughput.get(report.default_guarantee, {}).get("sagas_per_s_from_start")
    without = report.without_stats.get("sagas_per_s_from_start")
    if with_stats and without:
        rows.append(("windows of /stats", f"{with_stats:,} sagas/s with them, {without:,} without "
                     f"(STREAMSAGA_STATS=0): {with_stats / without:.2f}"))
    if "sagas_per_s" in report.hot_key:
        hot = report.hot_key
        rows.append((f"{report.default_guarantee}, one sku and wallet",
                     f"{hot['sagas_per_s']:,} sagas/s over {hot['orders']:,} orders "
                     f"({hot['sagas_per_s_from_start']:,}/s from the worker's start); worker "
                     f"{hot['worker_cores']} cores, peak RSS "
                     f"{hot['worker_peak_rss_mb']} MiB"))
    elif report.hot_key:
        rows.append((f"{report.default_guarantee}, one sku and wallet",
                     f"INCOMPLETE: {report.hot_key['completed']}/{report.hot_key['orders']} ended within "
                     f"{report.hot_key['stalled_after_s']}s"))
    for workers, run in report.scale_out.items():
        if "sagas_per_s" in run:
            rows.append((f"{report.default_guarantee}, {workers} worker(s) ready first",
                         f"{run['sagas_per_s']:,} sagas/s; workers {run['worker_cores']} cores, broker "
                         f"{run['broker_cores']} cores (of {os.cpu_count()})"))
        else:
            rows.append((f"{report.default_guarantee}, {workers} worker(s) ready first",
                         f"INCOMPLETE: {run['completed']}/{run['orders']} ended within {run['stalled_after_s']}s"))
    if "sagas_per_s" in report.cluster:
        run, one = report.cluster, report.throughput[report.default_guarantee]
        rows.append((f"{report.default_guarantee}, {run['brokers']} brokers, {run['replicas']} replicas",
                     f"{run['sagas_per_s']:,} sagas/s ({run['sagas_per_s_from_start']:,}/s from the worker's start; "
                     f"1 broker: {one.get('sagas_per_s_from_start', '?')}/s)"))
    elif report.cluster:
        rows.append((f"{report.default_guarantee}, {report.cluster['brokers']} brokers",
                     f"INCOMPLETE: {report.cluster['completed']}/{report.cluster['orders']} ended"))
    if report.latency:
        lat = report.latency
        warmup = f", after {lat['warmup_s']:g} s warm-up" if lat.get("warmup_s") else ""
        rows.append((f"latency at {lat['rate_per_s']}/s, commit interval {lat['commit_interval_s']} s{warmup}",
                     f"p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms until readable "
                     f"(read_committed); written p50 {lat.get('written_p50_ms')}, p99 {lat.get('written_p99_ms')} ms"))
    if report.recovery:
        rec = report.recovery
        rows += [(f"rebuild {rec['keys']:,} keys", f"ready in {rec['rebuild_ready_s']} s "
                  f"({rec['rebuild_rows_per_s']:,} rows/s)"),
                 ("restart with data kept", f"ready in {rec['kept_ready_s']} s, first order done at "
                  f"{rec['kept_first_order_s']} s")]
    rows += [("", ""), ("targets (issue 13)", "figure, target, met?")] + targets(report)
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def targets(report: Report) -> list[tuple[str, str]]:
    """Each throughput target beside the figure of this run, met or not; a target not measured says so."""

    def row(name: str, figure: float | None, target: float, higher: bool, unit: str = "") -> tuple[str, str]:
        wanted = f"{'>=' if higher else '<'} {target}{unit}"
        if figure is None:
            return name, f"not measured (target {wanted})"
        met = figure >= target if higher else figure < target
        shown = f"{figure:,.0f}" if abs(figure) >= 100 else f"{figure:.3g}"
        return name, f"{shown}{unit} against {wanted}: {'met' if met else 'NOT met'}"

    default = report.throughput.get(report.default_guarantee, {})
    floor = report.faust_floor.get("messages_per_s")
    sagas = default.get("sagas_per_s")
    quix = report.quix_floor.get("messages_per_s")
    alos, eos = (report.throughput.get(g, {}).get("sagas_per_s_from_start") for g in ("at_least_once", "exactly_once"))
    return [
        row(f"  sagas/s ({report.default_guarantee}) / Faust floor", sagas / floor if sagas and floor else None,
            0.37, True),
        row("  Faust floor / Quix Streams", floor / quix if floor and quix else None, 0.25, True),
        row("  p99 at half the maximum rate",
            report.latency.get("p99_ms") if report.latency.get("half_the_maximum_rate", True) else None,
            250, False, " ms"),
        row("  exactly_once / at_least_once", eos / alos if eos and alos else None, 0.8, True),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and report it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000, help="backlog of orders for the throughput run")
    parser.add_argument("--ceiling-messages", type=int, default=200_000)
    parser.add_argument("--faust-messages", type=int, default=50_000)
    parser.add_argument("--quix-messages", type=int, default=200_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--latency-warmup", type=float, default=5.0,
                        help="seconds of orders at the latency run's rate before it measures")
    parser.add_argument("--latency-rate", type=float, default=0.0,
                        help="orders/s of the latency run; 0 = half the maximum rate of this run (the target's)")
    parser.add_argument("--recovery-keys", type=int, default=1_000_000)
    parser.add_argument("--guarantees", default="at_least_once,exactly_once")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up on a guarantee's backlog after this")
    parser.add_argument("--commit-interval", type=float, default=None,
                        help="STREAMSAGA_COMMIT_INTERVAL_S of every run (default: each guarantee's own)")
    parser.add_argument("--scale-out", default="1,2",
                        help="worker counts to run the default guarantee with, all started before the orders arrive")
    parser.add_argument("--brokers", type=int, default=3,
                        help="then run the default guarantee's backlog on a local cluster of this many brokers "
                             "(3 replicas, min.insync.replicas 2); 1 skips it")
    parser.add_argument("--hot-orders", type=int, default=10_000,
                        help="then a backlog of this many orders all on one sku and one wallet (0 skips it)")
    parser.add_argument("--stats-cost", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the default guarantee with the windows of /stats off, to show their cost")
    args = parser.parse_args(argv)

    report = Report(machine={"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                             "platform": platform.platform(), "kafka": "4.3.1 (local, 1 broker, 1 GiB heap)"})
    sample = next(workload.orders(1)).encode()
    with tempfile.TemporaryDirectory(prefix="streamsaga-bench-") as tmp:
        root = Path(tmp)
        say("starting Kafka")
        with LocalKafka(BrokerConfig(port=free_port(), controller_port=free_port(), data_dir=root / "kafka",
                                     heap="1g")) as kafka:
            say(f"ceiling: {args.ceiling_messages} messages of {len(sample)} bytes")
            report.ceiling = asyncio.run(_ceiling(kafka.bootstrap, args.ceiling_messages, len(sample)))
            say(f"faust floor: the same pass-through as one Faust agent, {args.faust_messages} messages")
            report.faust_floor = faust_floor(kafka.bootstrap, root, args.faust_messages, len(sample))
            if args.quix_messages > 0:
                say(f"quix floor: the same pass-through in Quix Streams, {args.quix_messages} messages")
                report.quix_floor = quix_floor(kafka.bootstrap, root, args.quix_messages, len(sample))
            for guarantee in filter(None, args.guarantees.split(",")):
                report.throughput[guarantee] = throughput(kafka.bootstrap, root, guarantee, args.orders, args.timeout,
                                                          args.commit_interval)
            default = report.default_guarantee  # latency is measured under the default guarantee
            if args.stats_cost and default in report.throughput:
                report.without_stats = throughput(kafka.bootstrap, root, default, args.orders, args.timeout,
                                                  args.commit_interval, stats=False)
            if args.hot_orders > 0 and default in report.throughput:
                report.hot_key = throughput(kafka.bootstrap, root, default, args.hot_orders, args.timeout,
                                            args.commit_interval, hot=True)
            for workers in (int(n) for n in args.scale_out.split(",") if n):
                report.scale_out[str(workers)] = scale_out(kafka.bootstrap, kafka.pid, root, default, args.orders,
                                                           workers, args.timeout)
            best = report.throughput.get(default, {}).get("sagas_per_s")
            rate = args.latency_rate or (best / 2 if best else 0)
            if rate and args.latency_seconds > 0:
                report.latency = latency(kafka.bootstrap, root, rate, args.latency_seconds, args.commit_interval,
                                         args.latency_warmup)
                report.latency["half_the_maximum_rate"] = not args.latency_rate
            if args.recovery_keys > 0:
                report.recovery = recovery(kafka.bootstrap, root, args.recovery_keys)
        if args.brokers > 1 and report.default_guarantee in report.throughput:
            report.cluster = on_a_cluster(root, args.brokers, report.default_guarantee, args)
    print(table(report))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(report.__dict__, indent=2) + "\n")
    say(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
