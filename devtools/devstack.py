"""``make run``: a local broker, one supervised worker with its web views, demo data and orders; Ctrl-C stops all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from app.admin import ensure_topics
from config.settings import Settings
from devtools.demo import produce, seed_events, trickle, watch_outcomes
from devtools.kafka_local import BrokerConfig, LocalKafka, broker_answers, free_port, port_free
from devtools.supervisor import GaveUp, Supervisor

WORKER_START_TIMEOUT_S = 120.0
ORDER_BODY = '{"customer_id":"customer-1","items":[{"sku":"SKU-EGGS","quantity":2,"unit_price":"3.00"}]}'
ORDER_EVENT = (
    '{"event_id":"e-42","event_type":"OrderPlaced","occurred_at":"2026-01-01T00:00:00Z","version":1,'
    '"order_id":"order-42","customer_id":"customer-2",'
    '"items":[{"sku":"SKU-BREAD","quantity":1,"unit_price":"2.20"}],"total_amount":"2.20"}'
)


def _say(text: str) -> None:
    """Progress for the person at the terminal."""
    print(f"[streamsaga] {text}", flush=True)


def start_broker(settings: Settings) -> LocalKafka | None:
    """Start the local broker, or reuse one that already answers on the configured address."""
    host, port = settings.bootstrap_servers.split(",")[0].rsplit(":", 1)
    if broker_answers(host, int(port)):
        _say(f"using the Kafka broker already at {host}:{port}")
        return None
    # The controller listens on the next port up, or on any free one when that is taken.
    controller = int(port) + 1 if port_free(host, int(port) + 1) else free_port()
    kafka = LocalKafka(BrokerConfig(host=host, port=int(port), controller_port=controller,
                                    data_dir=settings.data_dir / "kafka"))
    _say(f"starting Kafka (KRaft) on {host}:{port}; its logs are in {settings.data_dir / 'kafka'}")
    return kafka.start(timeout=120)


def start_worker(
    settings: Settings, log_path: Path | None = None, program: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``streamsaga worker`` (or ``program worker``) with these settings and wait until its views answer."""
    log_path = log_path or settings.data_dir / "worker.log"
    _say(f"starting the worker; its log is {log_path}")
    program = program or [str(Path(sys.executable).with_name("streamsaga"))]
    process = subprocess.Popen(
        [*program, "worker", "-l", settings.log_level], stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **settings.to_env(), **(env or {})},
    )
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode}; see {log_path}")
        try:
            urllib.request.urlopen(f"{settings.web_url}/health", timeout=2)
            return process
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    stop_process(process)
    raise RuntimeError(f"the worker was not ready after {WORKER_START_TIMEOUT_S:.0f}s; see {log_path}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the process group, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


#: the views the banner shows first; they answer once the worker has applied the demo data
SEEDED_VIEWS = ("/inventory/SKU-APPLE", "/wallets/customer-1", "/customers/customer-1")
DEMO_DATA_TIMEOUT_S = 60.0


def banner(settings: Settings) -> str:
    """Where to look and how to drive the running system."""
    web = settings.web_url
    broker = settings.bootstrap_servers
    return f"""
  streamsaga is running.  Ctrl-C stops the worker and the broker.

  Web views:   curl {web}{SEEDED_VIEWS[0]}
               curl {web}{SEEDED_VIEWS[1]}
               curl {web}{SEEDED_VIEWS[2]}
               curl -XPOST {web}/orders -d '{ORDER_BODY}'
               curl '{web}/orders/<order_id>?wait=10'
  Monitoring:  curl '{web}/stats?window=5m'
               curl {web}/metrics
               open {web}/dashboard in a browser
  With kcat:   kcat -b {broker} -C -t {settings.topic('order-events')} -f '%k %s\\n'
               kcat -b {broker} -C -t {settings.topic('saga-events')} -f '%k %s\\n'
               echo 'order-42|{ORDER_EVENT}' \\
                 | kcat -b {broker} -P -t {settings.topic('order-events')} -K '|'
"""


async def _demo_data_shown(settings: Settings, timeout: float) -> bool:
    """Until the views the banner shows first answer: a user's first curl finds the demo data there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answers = [await asyncio.to_thread(_answers, f"{settings.web_url}{path}") for path in SEEDED_VIEWS]
        if all(answers):
            return True
        await asyncio.sleep(0.5)
    return False


def _answers(url: str) -> bool:
    """Whether the view answers 200 (a 404 means the worker has not applied that data yet)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:  # urllib's HTTPError and URLError are OSErrors
        return False


async def _demo(settings: Settings, supervisor: Supervisor) -> None:
    """Seed once per data directory, then place and watch orders until interrupted; keep the worker up."""
    marker = settings.data_dir / "seeded"
    if not marker.exists():
        count = await produce(settings, seed_events())
        marker.touch()
        _say(f"seeded {count} demo events (customers, wallets, stock)")
    if not await _demo_data_shown(settings, DEMO_DATA_TIMEOUT_S):
        _say(f"the worker has not shown the demo data after {DEMO_DATA_TIMEOUT_S:.0f} s; "
             f"see {settings.data_dir / 'worker.log'}")
    print(banner(settings), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(watch_outcomes(settings, stop))]
    if settings.demo_orders:
        _say(f"placing a demo order every {settings.demo_order_interval_s}s (STREAMSAGA_DEMO_ORDERS=0 turns it off)")
        tasks.append(asyncio.create_task(trickle(settings, stop, supervisor.up)))
    watcher = asyncio.create_task(supervisor.watch(stop))
    try:
        await asyncio.wait([watcher, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    if watcher.done():
        watcher.result()  # raises GaveUp when the worker kept failing


def main() -> int:
    """Run everything in the foreground; leave nothing running on exit."""
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pid_file = settings.data_dir / "worker.pid"
    kafka = start_broker(settings)
    supervisor = Supervisor(start=lambda: start_worker(settings), say=_say,
                            on_start=lambda worker: pid_file.write_text(f"{worker.pid}\n"))
    code = 0
    try:
        asyncio.run(ensure_topics(settings))
        supervisor.launch()
        asyncio.run(_demo(settings, supervisor))
    except KeyboardInterrupt:
        pass
    except GaveUp as exc:
        _say(f"{exc}; see {settings.data_dir / 'worker.log'}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _say("stopping")
        if supervisor.process is not None:
            stop_process(supervisor.process)
            pid_file.unlink(missing_ok=True)
        if kafka is not None:
            kafka.stop()
        _say("stopped; state is kept in " + str(settings.data_dir))
    return code


if __name__ == "__main__":
    sys.exit(main())
