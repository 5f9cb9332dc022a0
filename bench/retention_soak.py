"""Soak of saga retention: steady orders for several minutes, and what the saga tables hold as it goes.

Without retention every finished saga stays in its table and changelog, so both grow with every
order. With it, the live sagas should level off near rate x retention, and the changelogs with
them once the broker compacts the tombstones away. The run compresses time: a retention of
minutes instead of days, and a local broker whose segments roll each minute and which keeps
tombstones 60 s, so compaction shows within the run. Exits 1 if the live sagas did not level off.

example:
  .venv/bin/python bench/retention_soak.py                       # 8 minutes, 20 orders/s, 90 s retention
  .venv/bin/python bench/retention_soak.py --minutes 4 --retention 7d   # the growth without forgetting
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from config.settings import Settings, parse_duration  # noqa: E402
from devtools.kafka_local import BrokerConfig, LocalKafka, free_port  # noqa: E402
from support.scenario import PLENTY, RICH, order, seed, wait_for_seed  # noqa: E402
from support.topics import read_topic, setup_topics, write_events  # noqa: E402
from support.worker import Worker, new_settings  # noqa: E402

#: the broker's time scale for the soak: segments roll each minute, tombstones are kept a minute,
#: and the cleaner works on any dirty share
COMPRESSED_TIME = (
    ("log.roll.ms", "60000"),
    ("log.segment.bytes", "1048576"),
    ("log.cleaner.delete.retention.ms", "60000"),
    ("log.cleaner.min.cleanable.ratio", "0.01"),
    ("log.cleaner.backoff.ms", "2000"),
)
SAGA_TABLES = ("sagas", "saga_expiry")
#: live sagas may exceed rate x retention by this share: those in flight and those waiting for the next check
LEVEL_MARGIN = 1.5


def main() -> int:
    """Run the soak and print a line per sample, then the verdict beside its target."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0, help="how long orders are placed")
    parser.add_argument("--rate", type=int, default=20, help="orders placed per second")
    parser.add_argument("--retention", default="90s", help="STREAMSAGA_SAGA_RETENTION for the worker")
    parser.add_argument("--sample-s", type=float, default=30.0, help="seconds between samples")
    args = parser.parse_args()
    retention = parse_duration("--retention", args.retention).total_seconds()
    with tempfile.TemporaryDirectory(prefix="retention-soak-") as scratch:
        base = Path(scratch)
        broker = LocalKafka(BrokerConfig(port=free_port(), controller_port=free_port(), data_dir=base / "kafka",
                                         heap="512m", extra=COMPRESSED_TIME))
        broker.start(timeout=120)
        try:
            return _soak(broker, base, args.minutes * 60, args.rate, args.retention, retention, args.sample_s)
        finally:
            broker.stop()


def _soak(broker: LocalKafka, base: Path, seconds: float, rate: int, retention_text: str, retention: float,
          sample_s: float) -> int:
    """Place ``rate`` orders a second for ``seconds``, sampling the saga tables; the verdict's exit status."""
    settings = new_settings(broker.bootstrap, base, "soak", saga_retention=retention_text,
                            timeout_check_interval_s=5.0)
    setup_topics(settings)
    write_events(settings, seed())
    worker = Worker(settings, base / "worker.log").start()
    print(f"retention soak: {rate} orders/s for {seconds / 60:.0f} min, retention {retention_text},"
          f" broker log {broker.config.data_dir / 'logs'}, worker log {worker.log_path}")
    print(f"{'t (s)':>6} {'placed':>7} {'live sagas':>10} {'expiry':>7} {'saga changelogs MB':>18}"
          f" {'saga RocksDB MB':>15} {'all RocksDB MB':>14}")
    samples: list[tuple[float, int]] = []
    try:
        wait_for_seed(worker)
        start = time.monotonic()
        placed = 0
        next_sample = start + sample_s
        while (now := time.monotonic()) - start < seconds:
            due = int((now - start + 1) * rate) - placed
            batch = [order(f"soak-{placed + n}", RICH[(placed + n) % len(RICH)], [("SKU-A", 1, PLENTY["SKU-A"])])
                     for n in range(due)]
            placed += write_events(settings, batch)
            if now >= next_sample:
                next_sample += sample_s
                samples.append((now - start, _sample(broker, settings, now - start, placed)))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
    finally:
        worker.stop()
    return _verdict(samples, rate, retention)


def _sample(broker: LocalKafka, settings: Settings, elapsed: float, placed: int) -> int:
    """Print one sample line; the live sagas (keys whose last changelog record is not a tombstone)."""
    live = {table: _live_keys(broker, f"{settings.group_id}-{table}-changelog") for table in SAGA_TABLES}
    logs = broker.config.data_dir / "logs"
    changelogs = sum(_bytes(path, "*.log") for table in SAGA_TABLES
                     for path in logs.glob(f"{settings.group_id}-{table}-changelog-*"))
    saga_rocksdb = sum(_bytes(path) for table in SAGA_TABLES for path in settings.data_dir.rglob(f"{table}-*.db"))
    print(f"{elapsed:6.0f} {placed:7d} {live['sagas']:10d} {live['saga_expiry']:7d} {changelogs / 1e6:18.2f}"
          f" {saga_rocksdb / 1e6:15.2f} {_bytes(settings.data_dir) / 1e6:14.2f}", flush=True)
    return live["sagas"]


def _live_keys(broker: LocalKafka, topic: str) -> int:
    """Keys of a changelog whose last record is a value, as compaction will leave them."""
    last: dict[bytes, bool] = {}
    for record in read_topic(broker.bootstrap, topic):
        if record.key is not None:
            last[record.key] = record.value is not None
    return sum(last.values())


def _bytes(path: Path, pattern: str = "*") -> int:
    """Bytes on disk of the files under ``path`` (blocks used: the broker preallocates sparse index files)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob(pattern) if f.is_file())


def _verdict(samples: list[tuple[float, int]], rate: int, retention: float) -> int:
    """Level if, after twice the retention, live sagas stay under the steady level times the margin."""
    steady = rate * retention
    settled = [live for elapsed, live in samples if elapsed >= 2 * retention]
    if not settled:
        print("too short to judge: run for more than twice the retention")
        return 1
    peak = max(settled)
    level = peak <= LEVEL_MARGIN * steady
    print(f"live sagas after {2 * retention:.0f} s: {min(settled)}..{peak}; target: at most"
          f" {LEVEL_MARGIN} x rate x retention = {LEVEL_MARGIN * steady:.0f}: {'met' if level else 'NOT met'}")
    return 0 if level else 1


if __name__ == "__main__":
    sys.exit(main())
