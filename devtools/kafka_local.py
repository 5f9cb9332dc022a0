"""Launch local Apache Kafka (KRaft) for dev, tests, benchmarks: one broker, or a cluster of several.

Jars come from Maven Central (cached), each broker runs as a plain ``java`` subprocess in
its own process group, so no Docker and no Kafka distribution download are needed.

CLI: ``python -m devtools.kafka_local start|stop|run [--port N] [--data-dir D]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

from config.settings import min_insync_for

KAFKA_VERSION = "4.3.1"
LOG4J_VERSION = "2.25.4"
CACHE_ENV = "STREAMSAGA_KAFKA_CACHE"
STOP_TIMEOUT = 20.0
_TAIL_LINES = 40
_MVN_TIMEOUT = 900.0
_FORMAT_TIMEOUT = 120.0

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.streamsaga</groupId>
  <artifactId>kafka-local</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka_version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j_version}</version>
    </dependency>
  </dependencies>
</project>
"""


class KafkaLaunchError(RuntimeError):
    """Raised when the jars cannot be fetched or the broker cannot be started."""


@dataclass(frozen=True, kw_only=True)
class SecureListener:
    """A SASL_SSL listener: TLS with a key and certificate chain in one PEM file, PLAIN and SCRAM-SHA-512 users."""

    port: int
    #: the broker's private key (PKCS#8, unencrypted) followed by its certificate chain
    pem: Path
    #: user name -> password, for both mechanisms
    users: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class BrokerConfig:
    """Everything that distinguishes one local broker from another."""

    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int | None = None
    data_dir: Path
    heap: str = "512m"
    partitions: int = 8
    kafka_version: str = KAFKA_VERSION
    cache_dir: Path | None = None
    node_id: int = 1
    #: ``controller.quorum.voters`` of a cluster; empty: this node is the whole quorum
    voters: str = ""
    #: replicas of every topic (the cluster's size, up to 3); ``min.insync.replicas`` follows from it
    replication: int = 1
    #: a second listener, SASL over TLS, as a managed Kafka has (``SecureListener``); None: plaintext only
    secure: SecureListener | None = None
    #: more ``server.properties`` lines, over the defaults (a soak shortens segments and tombstone retention)
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def min_insync(self) -> int:
        """Replicas a write with acks=all needs (``config.settings.min_insync_for``, as the app's topics)."""
        return min_insync_for(self.replication)

    @property
    def quorum_port(self) -> int:
        """Controller port in effect, so callers needn't repeat the port+1 default."""
        return self.controller_port if self.controller_port is not None else self.port + 1

    @property
    def bootstrap(self) -> str:
        """bootstrap.servers value that clients pass to reach this broker."""
        return f"{self.host}:{self.port}"


def free_port() -> int:
    """Return an unused loopback port so tests don't collide with other brokers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports_in_a_row(count: int, low: int = 20_000, high: int = 60_000) -> int:
    """The first of ``count`` consecutive unused loopback ports, for a test's cluster on consecutive ports."""
    for _ in range(200):
        first = int.from_bytes(os.urandom(2), "big") % (high - low) + low
        if all(port_free("127.0.0.1", first + n) for n in range(count)):
            return first
    raise KafkaLaunchError(f"found no {count} free ports in a row from {low} to {high}")


def cluster_id() -> str:
    """Return a fresh KRaft cluster id: unpadded base64url of a uuid4, never starting with ``-``.

    Kafka's own ``Uuid.randomUuid`` skips ids with a leading dash too: the storage tool's
    argument parser would read one as an option (about 1 start in 64 failed that way).
    """
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not candidate.startswith("-"):
            return candidate


def server_properties(cfg: BrokerConfig) -> str:
    """Render server.properties for a combined broker+controller with dev defaults."""
    data = cfg.data_dir.resolve()
    controller = f"127.0.0.1:{cfg.quorum_port}"
    replicas, min_isr = str(cfg.replication), str(cfg.min_insync)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(cfg.node_id),
        "controller.quorum.voters": cfg.voters or f"{cfg.node_id}@{controller}",
        "listeners": f"PLAINTEXT://{cfg.bootstrap},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{cfg.bootstrap}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data / "logs"),
        "num.partitions": str(cfg.partitions),
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "8",
        "group.initial.rebalance.delay.ms": "0",
        # a dead worker's open transaction holds back read_committed readers until the coordinator aborts
        # it: checked every 10 s by default, after the transaction's own timeout
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        "auto.create.topics.enable": "false",
    }
    if cfg.secure is not None:
        props.update(_secure_properties(cfg, cfg.secure, controller))
    props.update(cfg.extra)
    return "".join(f"{key}={value}\n" for key, value in props.items())


def _secure_properties(cfg: BrokerConfig, secure: SecureListener, controller: str) -> dict[str, str]:
    """A SASL_SSL listener beside the plaintext one; PLAIN users in its JAAS line, SCRAM ones made at format."""
    address = f"SASL_SSL://{cfg.host}:{secure.port}"
    plain_users = " ".join(f'user_{name}="{password}"' for name, password in secure.users.items())
    return {
        "listeners": f"PLAINTEXT://{cfg.bootstrap},{address},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{cfg.bootstrap},{address}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        "listener.name.sasl_ssl.plain.sasl.jaas.config":
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
        "listener.name.sasl_ssl.ssl.keystore.location": str(secure.pem.resolve()),
    }


def scram_arguments(cfg: BrokerConfig) -> list[str]:
    """The storage tool's ``--add-scram`` arguments that create the SCRAM-SHA-512 users as the log is formatted."""
    if cfg.secure is None:
        return []
    return [argument for name, password in cfg.secure.users.items()
            for argument in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]


def log4j2_properties(cfg: BrokerConfig) -> str:
    """Render log4j2 config: WARN+ to <data>/broker.log so consoles stay quiet."""
    log_file = cfg.data_dir.resolve() / "broker.log"
    return (
        "status = warn\n"
        "appender.file.type = File\n"
        "appender.file.name = FILE\n"
        f"appender.file.fileName = {log_file}\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = WARN\n"
        "rootLogger.appenderRef.file.ref = FILE\n"
    )


def _default_cache_dir(version: str) -> Path:
    """Jar cache dir: $STREAMSAGA_KAFKA_CACHE, else a per-version dir in ~/.cache."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "streamsaga" / f"kafka-{version}"


def _require(tool: str) -> str:
    """Locate an external tool or fail with a message that says what to install."""
    path = shutil.which(tool)
    if path is None:
        raise KafkaLaunchError(f"'{tool}' not found on PATH; install it (needs Java 17+ and Maven 3.8+)")
    return path


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    """Keep only the last lines of tool output so errors stay readable."""
    return "\n".join(text.strip().splitlines()[-lines:])


def _file_tail(path: Path) -> str:
    """Tail of a log file for error messages; empty if it was never written."""
    try:
        tail = _tail(path.read_text(errors="replace"))
    except FileNotFoundError:
        return ""
    return f"--- {path.name} ---\n{tail}\n" if tail else ""


def _run(cmd: list[str], what: str, cwd: Path, timeout: float) -> None:
    """Run a helper command; any failure becomes a KafkaLaunchError with output tail."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise KafkaLaunchError(f"{what} timed out after {timeout:.0f}s: {' '.join(cmd)}") from exc
    if done.returncode != 0:
        output = _tail(f"{done.stdout}\n{done.stderr}")
        raise KafkaLaunchError(f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n{output}")


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock so concurrent processes don't run Maven at once."""
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"waiting for another process to fetch Kafka jars ({lock_path})...",
                file=sys.stderr,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch_jars(cache: Path, libs: Path, version: str) -> None:
    """Resolve the broker's runtime classpath with Maven into a clean libs dir."""
    mvn = _require("mvn")
    _require("java")
    print(
        f"fetching Kafka {version} jars with Maven into {libs}...",
        file=sys.stderr,
        flush=True,
    )
    shutil.rmtree(libs, ignore_errors=True)
    pom = cache / "pom.xml"
    pom.write_text(_POM.format(kafka_version=version, log4j_version=LOG4J_VERSION))
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    _run(cmd, "Maven jar fetch", cwd=cache, timeout=_MVN_TIMEOUT)
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaLaunchError(f"Maven succeeded but no kafka_2.13 jar landed in {libs}")


def ensure_jars(cache_dir: Path | None = None, version: str = KAFKA_VERSION) -> Path:
    """Return the libs dir with Kafka jars, fetched once per cache dir, process-safe."""
    cache = cache_dir or _default_cache_dir(version)
    libs = cache / "libs"
    marker = cache / f".fetched-{version}"
    if marker.exists():
        return libs
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        if not marker.exists():
            _fetch_jars(cache, libs, version)
            marker.write_text(f"kafka {version}, log4j {LOG4J_VERSION}\n")
    return libs


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    """Read exactly size bytes or raise, since Kafka responses are length-prefixed."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def brokers_listed(host: str, port: int, timeout: float = 2.0) -> int:
    """Raw Metadata v4 request: how many brokers the broker at host:port lists (0 while it does not answer).

    A stdlib socket instead of aiokafka: works inside a running event loop and doesn't
    spam aiokafka connection errors while the broker boots.
    """
    client_id = b"kafka-local-probe"
    payload = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id + struct.pack(">i?", -1, False)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(payload)) + payload)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            body = _recv_exact(sock, size)
    except OSError:
        return 0
    correlation_id, _throttle_ms, brokers = struct.unpack_from(">iii", body)
    return int(brokers) if correlation_id == 1 else 0


def broker_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True once the broker answers a metadata request and lists itself (= ready)."""
    return brokers_listed(host, port, timeout) > 0


def port_free(host: str, port: int) -> bool:
    """Check a port can be bound, to fail fast instead of after a JVM start."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _is_kafka(pid: int) -> bool:
    """True if pid is a live (non-zombie) Kafka JVM, so stale pid files kill no one."""
    if not Path("/proc/self").exists():  # no procfs (macOS): liveness is all we know
        with contextlib.suppress(OSError):
            os.kill(pid, 0)
            return True
        return False
    try:
        return b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _running_pid(pid_file: Path) -> int | None:
    """Pid from a pid file if that broker still runs; missing/garbled/stale -> None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _is_kafka(pid) else None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the broker's whole process group, ignoring one that already vanished."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    """Poll until a pid (not our child) is gone or no longer Kafka; False on timeout."""
    deadline = time.monotonic() + timeout
    while _is_kafka(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_from_pidfile(data_dir: Path, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop a broker left running by another process (`start` CLI); True if one ran."""
    pid_file = data_dir / "broker.pid"
    pid = _running_pid(pid_file)
    if pid is not None:
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
    pid_file.unlink(missing_ok=True)
    return pid is not None


class LocalKafka:
    """One local KRaft broker process: start, probe readiness, stop cleanly."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """bootstrap.servers for clients, e.g. '127.0.0.1:9092'."""
        return self.config.bootstrap

    @property
    def pid(self) -> int | None:
        """Broker JVM pid (= process-group id); None unless started by this object."""
        return self._proc.pid if self._proc else None

    @property
    def _data(self) -> Path:
        """Absolute data dir, so configs stay valid whatever the broker's cwd is."""
        return self.config.data_dir.resolve()

    def is_running(self) -> bool:
        """True while the broker process started by this object is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> Self:
        """Start the broker; block until it serves metadata, so it is usable at once."""
        self.launch(cluster_id())
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self, cluster: str) -> None:
        """Format the data dir (once, for ``cluster``) and start the JVM without waiting for it.

        A cluster launches all its nodes before waiting on any: none is ready before a quorum is up.
        """
        if self._proc is not None:
            raise KafkaLaunchError(f"broker already started by this object (pid {self._proc.pid})")
        self._check_preconditions()
        libs = ensure_jars(self.config.cache_dir, self.config.kafka_version)
        java = _require("java")
        self._write_configs()
        self._format_storage(java, libs, cluster)
        self._spawn(java, libs)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would: no controlled shutdown, nothing flushed."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        (self._data / "broker.pid").unlink(missing_ok=True)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the process group, SIGKILL on timeout, drop pid file; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        (self._data / "broker.pid").unlink(missing_ok=True)

    def __enter__(self) -> Self:
        """Start on entry so `with LocalKafka(cfg) as kafka:` always cleans up."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop on exit, even when the body raised."""
        self.stop()

    def _check_preconditions(self) -> None:
        """Fail fast, with advice, on a data dir already in use or on busy ports."""
        pid = _running_pid(self._data / "broker.pid")
        if pid is not None:
            raise KafkaLaunchError(
                f"a broker (pid {pid}) already uses {self._data}; "
                "stop it with `python -m devtools.kafka_local stop --data-dir ...`"
            )
        cfg = self.config
        for host, port in ((cfg.host, cfg.port), ("127.0.0.1", cfg.quorum_port)):
            if not port_free(host, port):
                raise KafkaLaunchError(f"port {port} is already in use; pick another one")

    def _write_configs(self) -> None:
        """Write server.properties and log4j2.properties into the data dir."""
        (self._data / "logs").mkdir(parents=True, exist_ok=True)
        (self._data / "server.properties").write_text(server_properties(self.config))
        (self._data / "log4j2.properties").write_text(log4j2_properties(self.config))

    def _java(self, java: str, libs: Path, jvm_opts: list[str]) -> list[str]:
        """JVM command prefix with our log4j2 config and the Maven-fetched classpath."""
        log4j = f"-Dlog4j2.configurationFile={self._data / 'log4j2.properties'}"
        return [java, *jvm_opts, log4j, "-cp", str(libs / "*")]

    def _format_storage(self, java: str, libs: Path, cluster: str) -> None:
        """Format the KRaft log dir once; a formatted dir keeps cluster id and data."""
        if (self._data / "logs" / "meta.properties").exists():
            return
        props = str(self._data / "server.properties")
        tool = ["kafka.tools.StorageTool", "format", f"--cluster-id={cluster}", "-c", props,
                *scram_arguments(self.config)]
        cmd = self._java(java, libs, []) + tool
        _run(cmd, "Kafka storage format", cwd=self._data, timeout=_FORMAT_TIMEOUT)

    def _spawn(self, java: str, libs: Path) -> None:
        """Launch the JVM in its own session so a terminal's Ctrl-C doesn't reach it."""
        heap = ["-Xms128m", f"-Xmx{self.config.heap}", "-XX:+UseSerialGC"]
        cmd = self._java(java, libs, heap)
        cmd += ["kafka.Kafka", str(self._data / "server.properties")]
        with (self._data / "broker.out").open("wb") as out:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self._data,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (self._data / "broker.pid").write_text(f"{self._proc.pid}\n")

    def wait_ready(self, timeout: float, brokers: int = 1) -> None:
        """Poll with metadata requests until this broker lists ``brokers``; fail early, with log tails, if it dies."""
        deadline = time.monotonic() + timeout
        while brokers_listed(self.config.host, self.config.port) < brokers:
            if not self.is_running():
                raise KafkaLaunchError(f"broker exited early (code {self._exit_code()})\n" + self._log_tails())
            if time.monotonic() > deadline:
                raise KafkaLaunchError(f"broker not ready after {timeout:.0f}s\n{self._log_tails()}")
            time.sleep(0.2)

    def _exit_code(self) -> int | None:
        """Exit status of the broker for error messages."""
        return self._proc.returncode if self._proc else None

    def _log_tails(self) -> str:
        """Last lines of broker stdout and log4j file, to explain a failed start."""
        return _file_tail(self._data / "broker.out") + _file_tail(self._data / "broker.log")


def cluster_configs(size: int, *, host: str = "127.0.0.1", first_port: int, controller_ports: Sequence[int],
                    data_dir: Path, heap: str = "384m", cache_dir: Path | None = None) -> list[BrokerConfig]:
    """One config per node: brokers on consecutive ports from ``first_port``, all controllers of one quorum.

    Topics get ``min(size, 3)`` replicas, and a write with acks=all needs 2 of 3 (``BrokerConfig.min_insync``).
    """
    if size < 1 or len(controller_ports) != size:
        raise KafkaLaunchError(f"a cluster of {size} needs {size} controller ports, not {len(controller_ports)}")
    voters = ",".join(f"{n + 1}@127.0.0.1:{port}" for n, port in enumerate(controller_ports))
    return [BrokerConfig(host=host, port=first_port + n, controller_port=controller_ports[n],
                         data_dir=data_dir / f"node-{n + 1}", heap=heap, node_id=n + 1, voters=voters,
                         replication=min(size, 3), cache_dir=cache_dir)
            for n in range(size)]


def _formatted_cluster_id(data_dir: Path) -> str | None:
    """The cluster id a node's log dir was formatted with, or None before it was."""
    try:
        text = (data_dir.resolve() / "logs" / "meta.properties").read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id":
            return value.strip()
    return None


class LocalCluster:
    """Several local KRaft nodes, each a broker and a controller of one quorum: replicated topics on one machine."""

    def __init__(self, configs: Sequence[BrokerConfig]) -> None:
        self.nodes = [LocalKafka(config) for config in configs]

    @property
    def bootstrap(self) -> str:
        """bootstrap.servers for clients: every node, so a client finds the cluster while one is down."""
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self, timeout: float = 120.0) -> Self:
        """Start every node, then wait until each one lists them all (topics with 3 replicas need 3 brokers)."""
        deadline = time.monotonic() + timeout
        formatted = {found for node in self.nodes if (found := _formatted_cluster_id(node.config.data_dir))}
        if len(formatted) > 1:
            raise KafkaLaunchError("the nodes' data dirs belong to different clusters; remove them to start afresh")
        cluster = formatted.pop() if formatted else cluster_id()
        try:
            for node in self.nodes:
                node.launch(cluster)
            for node in self.nodes:
                node.wait_ready(max(1.0, deadline - time.monotonic()), brokers=len(self.nodes))
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, index: int) -> None:
        """SIGKILL one node, as a crash would."""
        self.nodes[index].kill()

    def restart(self, index: int, timeout: float = 120.0) -> None:
        """Start a stopped node again on its data and wait until it lists the whole cluster."""
        node = self.nodes[index]
        node.launch(_formatted_cluster_id(node.config.data_dir) or cluster_id())
        node.wait_ready(timeout, brokers=len(self.nodes))

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every node at once, then wait for each: one stopped alone waits on a quorum the others hold."""
        for node in self.nodes:
            if node.pid is not None and node.is_running():
                _signal_group(node.pid, signal.SIGTERM)
        for node in self.nodes:
            node.stop(timeout)

    def __enter__(self) -> Self:
        """Start on entry so `with LocalCluster(...) as cluster:` always cleans up."""
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stop on exit, even when the body raised."""
        self.stop()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into KeyboardInterrupt so `run` stops the broker on both."""
    raise KeyboardInterrupt


def _ignore_stop_signals() -> None:
    """Ignore further Ctrl-C/SIGTERM so a second press can't abort the clean stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _run_foreground(kafka: LocalKafka, timeout: float) -> int:
    """Run the broker until Ctrl-C/SIGTERM (exit 0) or until it dies by itself (1)."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        kafka.start(timeout)
        print(
            f"Kafka ready at {kafka.bootstrap} (pid {kafka.pid}); Ctrl-C to stop",
            file=sys.stderr,
        )
        while kafka.is_running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping Kafka...", file=sys.stderr)
        return 0
    finally:
        _ignore_stop_signals()
        kafka.stop()
    print(
        f"Kafka exited unexpectedly; see {kafka.config.data_dir}/broker.log",
        file=sys.stderr,
    )
    return 1


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse CLI arguments (defaults match `make run`: port 9092, ./.kafka-data)."""
    parser = argparse.ArgumentParser(prog="python -m devtools.kafka_local",
                                     description="Local single-node Kafka (KRaft).")
    parser.add_argument(
        "command",
        choices=["start", "stop", "run"],
        help="start detached, stop it, or run in foreground",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=9092,
        help="client (PLAINTEXT) port; controller uses port+1",
    )
    parser.add_argument("--data-dir", type=Path, default=Path(".kafka-data"), help="broker data/log dir")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = _parse_args(argv)
    if args.command == "stop":
        stopped = stop_from_pidfile(args.data_dir)
        print(
            "Kafka stopped" if stopped else f"no running Kafka in {args.data_dir}",
            file=sys.stderr,
        )
        return 0
    kafka = LocalKafka(BrokerConfig(port=args.port, data_dir=args.data_dir))
    try:
        if args.command == "run":
            return _run_foreground(kafka, args.timeout)
        kafka.start(args.timeout)
    except KafkaLaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(kafka.bootstrap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
