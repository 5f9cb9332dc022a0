"""config.settings: defaults, STREAMSAGA_* parsing, validation and topic naming."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from config.settings import GUARANTEES, PAYMENT_MODES, Settings, SettingsError

DEFAULTS = {
    "broker": "kafka://127.0.0.1:9092",
    "security_protocol": "PLAINTEXT",
    "sasl_mechanism": "PLAIN",
    "sasl_username": "",
    "sasl_password": "",
    "ssl_cafile": "",
    "app_id": "streamsaga",
    "topic_prefix": "",
    "partitions": 8,
    "replication_factor": None,
    "data_dir": Path(".run"),
    "web_host": "127.0.0.1",
    "web_port": 6066,
    "web_bind": "",
    "web_token": "",
    "payment_mode": "internal",
    "processing_guarantee": "exactly_once",
    "session_timeout_s": 15.0,
    "producer_linger_ms": 5.0,
    "commit_interval_s": None,
    "bulk_restore_min_records": 20_000,
    "standby_replicas": 1,
    "saga_timeout_s": 300.0,
    "timeout_check_interval_s": 30.0,
    "retry_attempts": 3,
    "retry_initial_s": 1.0,
    "retry_multiplier": 2.0,
    "retry_max_s": 10.0,
    "stats": True,
    "metrics_interval_s": 10.0,
    "faust_sensors": False,
    "demo_orders": True,
    "demo_order_interval_s": 1.0,
    "log_level": "info",
    "local_brokers": 1,
    "local_workers": 1,
    "saga_retention": "7d",
}


def env(**values: str) -> dict[str, str]:
    """An environment with ``STREAMSAGA_<NAME>`` set for each keyword."""
    return {f"STREAMSAGA_{name.upper()}": value for name, value in values.items()}


def test_defaults_match_the_contract_and_readme() -> None:
    assert dataclasses.asdict(Settings()) == DEFAULTS
    assert set(DEFAULTS) == {f.name for f in dataclasses.fields(Settings)}


def test_empty_environment_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"PARTITIONS": "3", "STREAMSAGA_NOPE": "1", "streamsaga_partitions": "3"}) == Settings()


def test_empty_values_mean_default() -> None:
    assert Settings.from_env(env(partitions="", demo_orders="", broker="")) == Settings()


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSAGA_PARTITIONS", "4")
    monkeypatch.setenv("STREAMSAGA_TOPIC_PREFIX", "run7-")
    settings = Settings.from_env()
    assert settings.partitions == 4
    assert settings.topic_prefix == "run7-"


def test_every_kind_of_value_is_parsed() -> None:
    settings = Settings.from_env(
        env(
            broker="kafka://k1:9092;kafka://k2:9093",
            app_id="saga-test",
            topic_prefix="t1-",
            partitions="4",
            replication_factor="3",
            data_dir="/tmp/streamsaga-data",
            web_port="7000",
            web_bind="0.0.0.0",
            payment_mode="external",
            processing_guarantee="at_least_once",
            commit_interval_s="0.25",
            saga_timeout_s="2.5",
            timeout_check_interval_s="0.25",
            retry_attempts="5",
            retry_initial_s="0.1",
            retry_multiplier="3",
            retry_max_s="60",
            demo_orders="false",
            demo_order_interval_s="0.5",
            log_level="debug",
            local_brokers="3",
            local_workers="2",
        )
    )
    assert (settings.local_brokers, settings.local_workers) == (3, 2)
    assert settings.partitions == 4 and type(settings.partitions) is int
    assert settings.replication_factor == 3
    assert settings.data_dir == Path("/tmp/streamsaga-data") and isinstance(settings.data_dir, Path)
    assert settings.web_port == 7000
    assert settings.web_bind == "0.0.0.0"
    assert settings.payment_mode == "external"
    assert settings.processing_guarantee == "at_least_once"
    assert settings.commit_interval_s == 0.25
    assert settings.saga_timeout_s == 2.5 and type(settings.saga_timeout_s) is float
    assert settings.timeout_check_interval_s == 0.25
    assert settings.retry_attempts == 5
    assert (settings.retry_initial_s, settings.retry_multiplier, settings.retry_max_s) == (0.1, 3.0, 60.0)
    assert type(settings.retry_multiplier) is float
    assert settings.demo_orders is False
    assert settings.demo_order_interval_s == 0.5
    assert (settings.app_id, settings.topic_prefix, settings.log_level) == ("saga-test", "t1-", "debug")


@pytest.mark.parametrize(("guarantee", "interval"), [("exactly_once", 0.25), ("at_least_once", 1.0)])
def test_the_commit_interval_is_short_under_exactly_once_unless_set(guarantee: str, interval: float) -> None:
    assert Settings(processing_guarantee=guarantee).commit_interval == interval
    assert Settings(processing_guarantee=guarantee, commit_interval_s=2.0).commit_interval == 2.0


def test_a_setting_left_to_its_default_is_left_out_of_a_child_s_environment() -> None:
    assert "STREAMSAGA_COMMIT_INTERVAL_S" not in Settings().to_env()
    assert Settings.from_env(Settings().to_env()) == Settings()
    assert Settings.from_env(Settings(commit_interval_s=0.5).to_env()).commit_interval_s == 0.5


@pytest.mark.parametrize(("brokers", "replicas", "min_insync"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)])
def test_topics_get_a_replica_per_local_broker_up_to_three(brokers: int, replicas: int, min_insync: int) -> None:
    settings = Settings(local_brokers=brokers)
    assert (settings.replicas, settings.min_insync_replicas) == (replicas, min_insync)


def test_sasl_needs_a_user_and_a_password() -> None:
    with pytest.raises(SettingsError, match="SASL_SSL needs sasl_username and sasl_password"):
        Settings.from_env(env(security_protocol="SASL_SSL", sasl_username="alice"))
    settings = Settings.from_env(env(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                                     sasl_username="alice", sasl_password="secret", ssl_cafile="/etc/ca.pem"))
    assert (settings.sasl_mechanism, settings.ssl_cafile) == ("SCRAM-SHA-512", "/etc/ca.pem")


def test_a_replication_factor_set_wins_over_the_local_brokers() -> None:
    assert Settings(local_brokers=3, replication_factor=1).replicas == 1
    assert Settings(replication_factor=3).replicas == 3
    assert Settings.from_env(env(replication_factor="2")).min_insync_replicas == 1
    assert "STREAMSAGA_REPLICATION_FACTOR" not in Settings().to_env()


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "True", "yes", "Yes", "on", "ON"])
def test_true_bools(raw: str) -> None:
    assert Settings.from_env(env(demo_orders=raw)).demo_orders is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "No", "off", "OFF"])
def test_false_bools(raw: str) -> None:
    assert Settings.from_env(env(demo_orders=raw)).demo_orders is False


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("demo_orders", "maybe"),
        ("demo_orders", "2"),
        ("partitions", "four"),
        ("partitions", "4.0"),
        ("web_port", "80a"),
        ("retry_attempts", "1e3"),
        ("saga_timeout_s", "soon"),
        ("retry_initial_s", "1,5"),
        ("replication_factor", "three"),
    ],
)
def test_unparsable_values_raise_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env(**{name: raw}))
    message = str(caught.value)
    assert f"STREAMSAGA_{name.upper()}" in message
    assert repr(raw) in message


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("payment_mode", "paypal"),
        ("payment_mode", "INTERNAL"),
        ("processing_guarantee", "exactly-once"),
        ("security_protocol", "TLS"),
        ("sasl_mechanism", "GSSAPI"),
        ("partitions", "0"),
        ("partitions", "-1"),
        ("replication_factor", "0"),
        ("standby_replicas", "-1"),
        ("local_brokers", "0"),
        ("local_brokers", "6"),
        ("local_workers", "0"),
        ("local_workers", "9"),
        ("saga_timeout_s", "0"),
        ("saga_timeout_s", "-5"),
        ("timeout_check_interval_s", "0"),
        ("retry_attempts", "0"),
        ("bulk_restore_min_records", "-1"),
        ("saga_retention", "0"),
        ("saga_retention", "-1d"),
        ("saga_retention", "3651d"),
        ("saga_retention", "7 days"),
        ("saga_retention", "nan"),
        ("saga_retention", "inf"),
        ("saga_retention", "d"),
    ],
)
def test_out_of_range_values_raise_naming_the_setting(name: str, raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env(**{name: raw}))
    assert name in str(caught.value).lower()


@pytest.mark.parametrize("name", ["saga_timeout_s", "timeout_check_interval_s"])
@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf"])
def test_non_finite_timeouts_are_refused(name: str, raw: str) -> None:
    """float() reads "nan"/"inf"; a NaN passes every `<= 0` check, and timedelta(seconds=nan) fails later."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env(**{name: raw}))
    assert name in str(caught.value).lower()


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_constructor_validates_too() -> None:
    with pytest.raises(SettingsError, match="payment_mode"):
        Settings(payment_mode="cash")
    with pytest.raises(SettingsError, match="retry_attempts"):
        Settings(retry_attempts=0)


def test_known_choices() -> None:
    assert PAYMENT_MODES == ("internal", "external")
    assert GUARANTEES == ("at_least_once", "exactly_once")
    for mode in PAYMENT_MODES:
        assert Settings(payment_mode=mode).payment_mode == mode


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.partitions = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("broker", "servers"),
    [
        ("kafka://127.0.0.1:9092", "127.0.0.1:9092"),
        ("127.0.0.1:9092", "127.0.0.1:9092"),
        ("kafka://k1:9092;kafka://k2:9093", "k1:9092,k2:9093"),
        ("kafka://k1:9092;k2:9093", "k1:9092,k2:9093"),
    ],
)
def test_bootstrap_servers_strips_the_kafka_scheme(broker: str, servers: str) -> None:
    assert Settings(broker=broker).bootstrap_servers == servers


def test_default_bootstrap_servers() -> None:
    assert Settings().bootstrap_servers == "127.0.0.1:9092"


def test_topic_names_without_prefix() -> None:
    settings = Settings()
    assert settings.topic("order-events") == "order-events"
    assert settings.internal_topic("saga-replies") == "streamsaga-saga-replies"


def test_topic_names_with_prefix() -> None:
    settings = Settings.from_env(env(topic_prefix="t42-", app_id="shop"))
    assert settings.topic("order-events") == "t42-order-events"
    assert settings.topic("order-events.DLQ") == "t42-order-events.DLQ"
    assert settings.internal_topic("stock-commands") == "t42-shop-stock-commands"


def test_every_setting_is_documented_in_the_readme() -> None:
    """The README's settings table names each STREAMSAGA_* variable the code reads."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [f.name for f in dataclasses.fields(Settings) if f"`STREAMSAGA_{f.name.upper()}`" not in readme]
    assert missing == []


def test_the_web_url_is_where_the_views_answer() -> None:
    assert Settings(web_host="127.0.0.2", web_port=7001).web_url == "http://127.0.0.2:7001"


@pytest.mark.parametrize(("raw", "seconds"), [
    ("7d", 7 * 86400), ("12h", 43200), ("1.5h", 5400), ("30m", 1800), ("90s", 90), ("45", 45), (" 2D ", 172800),
])
def test_the_saga_retention_is_a_number_and_a_unit_or_seconds(raw: str, seconds: float) -> None:
    assert Settings.from_env(env(saga_retention=raw)).saga_retention_time == timedelta(seconds=seconds)
