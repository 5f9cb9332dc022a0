"""One frozen settings object, read from ``STREAMSAGA_*`` environment variables."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path

PAYMENT_MODES = ("internal", "external")
GUARANTEES = ("at_least_once", "exactly_once")
LOG_LEVELS = ("crit", "error", "warn", "info", "debug")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: the default commit interval under each guarantee (``Settings.commit_interval``)
EXACTLY_ONCE_COMMIT_INTERVAL_S = 0.25
AT_LEAST_ONCE_COMMIT_INTERVAL_S = 1.0
#: ``make run``'s limits: each broker is a JVM and each worker a process on this one machine
MAX_LOCAL_BROKERS = 5
MAX_LOCAL_WORKERS = 8


def min_insync_for(replicas: int) -> int:
    """``min.insync.replicas`` for a topic of ``replicas``: 2 of 3, so a write survives one broker down; 1 below 3."""
    return max(1, min(2, replicas - 1))


class SettingsError(ValueError):
    """A setting has a value the application cannot use."""


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: the longest duration a setting takes: ten years, far from where dates overflow
MAX_DURATION_S = 3650 * 86400


def parse_duration(name: str, raw: str) -> timedelta:
    """A positive span written as a number and a unit (``7d``, ``12h``, ``30m``, ``90s``) or as seconds alone."""
    text = raw.strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in DURATION_UNITS else (text, "s")
    try:
        seconds = float(number) * DURATION_UNITS[unit]
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_DURATION_S:  # NaN fails too
        raise SettingsError(f"{name} must be a positive duration up to 3650d, such as 7d, 12h, 30m or 90s, not {raw!r}")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Settings:
    """Every knob of the application; the README lists them with their defaults."""

    broker: str = "kafka://127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    #: empty: the system's trusted CAs
    ssl_cafile: str = ""
    app_id: str = "streamsaga"
    topic_prefix: str = ""
    partitions: int = 8
    #: None: as many replicas as local brokers, up to 3 (see ``replicas``)
    replication_factor: int | None = None
    data_dir: Path = Path(".run")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_bind: str = ""
    #: empty: the views answer anyone; set: every path but /livez, /readyz and /metrics needs it as a bearer token
    web_token: str = ""
    payment_mode: str = "internal"
    processing_guarantee: str = "exactly_once"
    session_timeout_s: float = 15.0
    producer_linger_ms: float = 5.0
    #: None: ``EXACTLY_ONCE_COMMIT_INTERVAL_S`` or ``AT_LEAST_ONCE_COMMIT_INTERVAL_S`` (see ``commit_interval``)
    commit_interval_s: float | None = None
    bulk_restore_min_records: int = 20_000
    standby_replicas: int = 1
    saga_timeout_s: float = 300.0
    #: how long a finished saga is kept before it is removed from its table and changelog (``parse_duration``)
    saga_retention: str = "7d"
    timeout_check_interval_s: float = 30.0
    retry_attempts: int = 3
    retry_initial_s: float = 1.0
    retry_multiplier: float = 2.0
    retry_max_s: float = 10.0
    stats: bool = True
    metrics_interval_s: float = 10.0
    faust_sensors: bool = False
    demo_orders: bool = True
    demo_order_interval_s: float = 1.0
    log_level: str = "info"
    #: ``make run`` only: how many local KRaft brokers and supervised workers it starts
    local_brokers: int = 1
    local_workers: int = 1

    def __post_init__(self) -> None:
        if self.payment_mode not in PAYMENT_MODES:
            raise SettingsError(f"payment_mode must be one of {PAYMENT_MODES}, not {self.payment_mode!r}")
        if self.processing_guarantee not in GUARANTEES:
            raise SettingsError(
                f"processing_guarantee must be one of {GUARANTEES}, not {self.processing_guarantee!r}"
            )
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise SettingsError(
                f"security_protocol must be one of {SECURITY_PROTOCOLS}, not {self.security_protocol!r}")
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise SettingsError(f"sasl_mechanism must be one of {SASL_MECHANISMS}, not {self.sasl_mechanism!r}")
        if self.security_protocol.startswith("SASL_") and not (self.sasl_username and self.sasl_password):
            raise SettingsError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password")
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(f"log_level must be one of {LOG_LEVELS}, not {self.log_level!r}")
        if self.partitions < 1 or (self.replication_factor is not None and self.replication_factor < 1):
            raise SettingsError("partitions and replication_factor must be at least 1")
        if not 1 <= self.local_brokers <= MAX_LOCAL_BROKERS:
            raise SettingsError(f"local_brokers must be from 1 to {MAX_LOCAL_BROKERS}, not {self.local_brokers}")
        if not 1 <= self.local_workers <= MAX_LOCAL_WORKERS:
            raise SettingsError(f"local_workers must be from 1 to {MAX_LOCAL_WORKERS}, not {self.local_workers}")
        if not 6 <= self.session_timeout_s <= 1800:
            raise SettingsError("session_timeout_s must be from 6 to 1800 (the broker's group limits)")
        if self.commit_interval_s is not None and self.commit_interval_s <= 0:
            raise SettingsError("commit_interval_s must be positive")
        if self.saga_timeout_s <= 0 or self.timeout_check_interval_s <= 0:
            raise SettingsError("saga_timeout_s and timeout_check_interval_s must be positive")
        parse_duration("saga_retention", self.saga_retention)
        if self.standby_replicas < 0:
            raise SettingsError("standby_replicas must not be negative (0: no standby copies of the tables)")
        if self.bulk_restore_min_records < 0:
            raise SettingsError("bulk_restore_min_records must not be negative (0 turns bulk restore off)")
        if self.retry_attempts < 1:
            raise SettingsError("retry_attempts must be at least 1")
        if not 0 < self.web_port < 65536:
            raise SettingsError(f"web_port must be from 1 to 65535, not {self.web_port}")
        if self.metrics_interval_s <= 0:
            raise SettingsError("metrics_interval_s must be positive")
        for name in ("retry_initial_s", "retry_max_s", "demo_order_interval_s", "producer_linger_ms"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative")
        if self.retry_multiplier < 1:
            raise SettingsError("retry_multiplier must be at least 1")

    @property
    def commit_interval(self) -> float:
        """Seconds between commits: the setting, else short under exactly_once, where every outcome and each hop
        to another worker wait for a commit to be seen (each commit holds the agents, so not shorter: the README
        has the figures), and 1 s under at_least_once."""
        if self.commit_interval_s is not None:
            return self.commit_interval_s
        if self.processing_guarantee == "exactly_once":
            return EXACTLY_ONCE_COMMIT_INTERVAL_S
        return AT_LEAST_ONCE_COMMIT_INTERVAL_S

    @property
    def saga_retention_time(self) -> timedelta:
        """How long a finished saga is kept (``saga_retention``, read)."""
        return parse_duration("saga_retention", self.saga_retention)

    @property
    def replicas(self) -> int:
        """Replicas of every topic we create: the setting, else one per local broker up to 3."""
        return self.replication_factor if self.replication_factor is not None else min(self.local_brokers, 3)

    @property
    def min_insync_replicas(self) -> int:
        """``min.insync.replicas`` of our topics (``min_insync_for``)."""
        return min_insync_for(self.replicas)

    @property
    def bootstrap_servers(self) -> str:
        """The broker list without Faust's ``kafka://`` scheme, for plain clients."""
        return ",".join(part.split("://", 1)[-1] for part in self.broker.split(";"))

    @property
    def web_url(self) -> str:
        """Where this worker's web views answer, for clients on this machine."""
        return f"http://{self.web_host}:{self.web_port}"

    def topic(self, name: str) -> str:
        """The full name of a public topic, so tests can share one broker."""
        return f"{self.topic_prefix}{name}"

    @property
    def group_id(self) -> str:
        """Faust's app id: the consumer group, and the stem of internal topics and changelogs."""
        return f"{self.topic_prefix}{self.app_id}"

    def internal_topic(self, name: str) -> str:
        """The full name of an internal topic, owned by this application id."""
        return f"{self.group_id}-{name}"

    def to_env(self) -> dict[str, str]:
        """The ``STREAMSAGA_*`` variables that reproduce these settings in a child process."""
        env = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "1" if value else "0"
            env[f"STREAMSAGA_{field.name.upper()}"] = str(value)
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``STREAMSAGA_<FIELD>`` variables, defaults elsewhere."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = env.get(f"STREAMSAGA_{field.name.upper()}")
            if raw is None or raw == "":
                continue
            values[field.name] = _convert(field.name, str(field.type), raw)
        return cls(**values)  # type: ignore[arg-type]


def _convert(name: str, type_name: str, raw: str) -> object:
    """Turn one environment string into the field's type, naming the variable on failure."""
    try:
        if type_name == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if type_name in ("int", "int | None"):
            return int(raw)
        if type_name in ("float", "float | None"):
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
            return value
        if type_name == "Path":
            return Path(raw)
        return raw
    except ValueError:
        raise SettingsError(f"STREAMSAGA_{name.upper()}={raw!r} is not a valid {type_name}") from None
