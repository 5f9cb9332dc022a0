"""``make run``: local brokers, supervised workers with their web views, demo data and orders; Ctrl-C stops all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.admin import ensure_topics
from app.faust_app import bearer_headers
from config.settings import Settings, SettingsError
from devtools.demo import produce, seed_events, trickle, watch_outcomes
from devtools.kafka_local import (
    BrokerConfig,
    KafkaLaunchError,
    LocalCluster,
    LocalKafka,
    broker_answers,
    brokers_listed,
    cluster_configs,
    free_port,
    port_free,
)
from devtools.supervisor import GaveUp, Supervisor

WORKER_START_TIMEOUT_S = 120.0
ORDER_BODY = '{"customer_id":"customer-1","items":[{"sku":"SKU-EGGS","quantity":2,"unit_price":"3.00"}]}'
ORDER_EVENT = (
    '{"event_id":"e-42","event_type":"OrderPlaced","occurred_at":"\'$(date -u +%FT%TZ)\'","version":1,'
    '"order_id":"order-42","customer_id":"customer-2",'
    '"items":[{"sku":"SKU-BREAD","quantity":1,"unit_price":"2.20"}],"total_amount":"2.20"}'
)


def _say(text: str) -> None:
    """Progress for the person at the terminal."""
    print(f"[streamsaga] {text}", flush=True)


#: a cluster's controllers listen this far above its brokers (9192, 9193, 9194), or on free ports
CONTROLLER_PORT_OFFSET = 100


class StateMismatch(RuntimeError):
    """The data directory holds the state of another local broker setup, which these brokers do not have."""


def start_broker(settings: Settings) -> tuple[LocalKafka | LocalCluster | None, Settings]:
    """Start the local broker, or ``local_brokers`` of them, or reuse what answers; the settings then name them all."""
    host, port = settings.bootstrap_servers.split(",")[0].rsplit(":", 1)
    if settings.local_brokers > 1:
        return _start_cluster(settings, host, int(port))
    if broker_answers(host, int(port)):
        _say(f"using the Kafka broker already at {host}:{port}")
        return None, settings
    # The controller listens on the next port up, or on any free one when that is taken.
    controller = int(port) + 1 if port_free(host, int(port) + 1) else free_port()
    kafka = LocalKafka(BrokerConfig(host=host, port=int(port), controller_port=controller,
                                    data_dir=settings.data_dir / "kafka"))
    _say(f"starting Kafka (KRaft) on {host}:{port}; its logs are in {settings.data_dir / 'kafka'}")
    return kafka.start(timeout=120), settings


def _start_cluster(settings: Settings, host: str, first: int) -> tuple[LocalCluster | None, Settings]:
    """Brokers on ``first`` and the next ports, one controller quorum; every client is given all of them."""
    size = settings.local_brokers
    ports = [first + n for n in range(size)]
    if len(settings.bootstrap_servers.split(",")) == 1:  # one address given: a client must find the others too
        settings = replace(settings, broker=";".join(f"kafka://{host}:{port}" for port in ports))
    listed = brokers_listed(host, first)
    if listed >= size:
        _say(f"using the Kafka cluster of {listed} already at {host}:{first}")
        return None, settings
    if listed:
        raise KafkaLaunchError(f"a Kafka cluster of {listed} already answers on {host}:{first}, and "
                               f"STREAMSAGA_LOCAL_BROKERS={size}; stop it or set STREAMSAGA_BROKER to another port")
    controllers = [port + CONTROLLER_PORT_OFFSET if port_free(host, port + CONTROLLER_PORT_OFFSET) else free_port()
                   for port in ports]
    data = settings.data_dir / "kafka-cluster"
    cluster = LocalCluster(cluster_configs(size, host=host, first_port=first, controller_ports=controllers,
                                           data_dir=data))
    _say(f"starting a Kafka (KRaft) cluster of {size} brokers on {host}:{ports[0]}-{ports[-1]}, "
         f"{settings.replicas} replicas of every topic; its logs are in {data}")
    return cluster.start(timeout=180), settings


def check_state(settings: Settings) -> None:
    """Refuse a data directory made with another number of local brokers: its tables and seed belong to those."""
    marker = settings.data_dir / "local-brokers"
    if marker.exists():
        made_with = int(marker.read_text().strip() or 1)
    elif (settings.data_dir / "kafka").exists():  # made before the marker existed: one broker
        made_with = 1
    else:
        made_with = settings.local_brokers
    if made_with != settings.local_brokers:
        raise StateMismatch(
            f"{settings.data_dir} holds the state of {made_with} local broker(s), and STREAMSAGA_LOCAL_BROKERS="
            f"{settings.local_brokers}; run `make clean` first, or set STREAMSAGA_DATA_DIR to another directory")
    marker.write_text(f"{settings.local_brokers}\n")


def worker_settings(settings: Settings) -> list[Settings]:
    """One settings object per local worker: the first as configured, the others each on the next web port
    with a data directory of their own (their tables, log and transactional id)."""
    return [settings] + [replace(settings, web_port=settings.web_port + n,
                                 data_dir=settings.data_dir / f"worker-{n + 1}")
                         for n in range(1, settings.local_workers)]


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
            urllib.request.urlopen(f"{settings.web_url}/readyz", timeout=2)  # open without the web token
            return process
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    stop_process(process)
    raise RuntimeError(f"the worker was not ready after {WORKER_START_TIMEOUT_S:.0f}s; see {log_path}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the process group, then SIGKILL if it lingers."""
    stop_processes([process], timeout)


def stop_processes(processes: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM every process group at once, then SIGKILL what lingers: workers stopped one by one would each
    wait for the others to take over its partitions."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


#: the views the banner shows first; they answer once the worker has applied the demo data
SEEDED_VIEWS = ("/inventory/SKU-APPLE", "/wallets/customer-1", "/customers/customer-1")
DEMO_DATA_TIMEOUT_S = 60.0


def banner(settings: Settings, workers: int = 1) -> str:
    """Where to look and how to drive the running system."""
    web = settings.web_url
    broker = settings.bootstrap_servers
    what = "the worker and the broker" if workers == 1 and settings.local_brokers == 1 else "the workers and brokers"
    others = "".join(f"\n               worker {n + 1} answers the same on port {settings.web_port + n}"
                     for n in range(1, workers))
    curl = "curl -H \"Authorization: Bearer $STREAMSAGA_WEB_TOKEN\"" if settings.web_token else "curl"
    return f"""
  streamsaga is running.  Ctrl-C stops {what}.

  Web views:   {curl} {web}{SEEDED_VIEWS[0]}
               {curl} {web}{SEEDED_VIEWS[1]}
               {curl} {web}{SEEDED_VIEWS[2]}
               {curl} -XPOST {web}/orders -d '{ORDER_BODY}'
               {curl} '{web}/orders/<order_id>?wait=10'{others}
  Monitoring:  {curl} '{web}/stats?window=5m'
               {curl} {web}/metrics
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
        answers = [await asyncio.to_thread(_answers, f"{settings.web_url}{path}", settings.web_token)
                   for path in SEEDED_VIEWS]
        if all(answers):
            return True
        await asyncio.sleep(0.5)
    return False


def _answers(url: str, token: str = "") -> bool:
    """Whether the view answers 200 (a 404 means the worker has not applied that data yet)."""
    request = urllib.request.Request(url, headers=bearer_headers(token))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:  # urllib's HTTPError and URLError are OSErrors
        return False


async def _demo(settings: Settings, supervisors: list[Supervisor]) -> None:
    """Seed once per data directory, then place and watch orders until interrupted; keep the workers up."""
    marker = settings.data_dir / "seeded"
    if not marker.exists():
        count = await produce(settings, seed_events())
        marker.touch()
        _say(f"seeded {count} demo events (customers, wallets, stock)")
    if not await _demo_data_shown(settings, DEMO_DATA_TIMEOUT_S):
        _say(f"the worker has not shown the demo data after {DEMO_DATA_TIMEOUT_S:.0f} s; "
             f"see {settings.data_dir / 'worker.log'}")
    print(banner(settings, len(supervisors)), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(watch_outcomes(settings, stop))]
    if settings.demo_orders:
        _say(f"placing a demo order every {settings.demo_order_interval_s}s (STREAMSAGA_DEMO_ORDERS=0 turns it off)")
        tasks.append(asyncio.create_task(trickle(settings, stop, supervisors[0].up)))
    watchers = [asyncio.create_task(supervisor.watch(stop)) for supervisor in supervisors]
    try:
        await asyncio.wait([*watchers, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        await asyncio.gather(*tasks, *watchers, return_exceptions=True)
    for watcher in watchers:
        watcher.result()  # raises GaveUp when a worker kept failing


def _supervisor(settings: Settings, number: int, workers: int) -> Supervisor:
    """Keeps one worker up; with several, its messages say which one."""
    pid_file = settings.data_dir / "worker.pid"

    def say(text: str) -> None:
        _say(text if workers == 1 else f"worker {number}: {text}")

    return Supervisor(start=lambda: start_worker(settings), say=say,
                      on_start=lambda worker: pid_file.write_text(f"{worker.pid}\n"))


def main() -> int:
    """Run everything in the foreground; leave nothing running on exit."""
    try:
        settings = Settings.from_env()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        check_state(settings)
        kafka, settings = start_broker(settings)
    except (SettingsError, StateMismatch, KafkaLaunchError) as exc:
        _say(f"cannot start: {exc}")
        return 1
    members = worker_settings(settings)
    supervisors = [_supervisor(member, n + 1, len(members)) for n, member in enumerate(members)]
    code = 0
    try:
        asyncio.run(ensure_topics(settings))
        for member in members:
            member.data_dir.mkdir(parents=True, exist_ok=True)
        for supervisor in supervisors:
            supervisor.launch()
        asyncio.run(_demo(settings, supervisors))
    except KeyboardInterrupt:
        pass
    except GaveUp as exc:
        _say(f"{exc}; see the worker logs in {settings.data_dir}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _say("stopping")
        stop_processes([supervisor.process for supervisor in supervisors if supervisor.process is not None])
        for member in members:
            (member.data_dir / "worker.pid").unlink(missing_ok=True)
        if kafka is not None:
            kafka.stop()
        _say("stopped; state is kept in " + str(settings.data_dir))
    return code


if __name__ == "__main__":
    sys.exit(main())
