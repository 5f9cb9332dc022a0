"""How every Kafka client of the app connects: the brokers, and TLS and SASL when the settings ask for them.

The worker (through Faust), the CLI commands, the metrics reader and ``make run`` all take their options
from here, so a managed Kafka needs its settings once. ``check_brokers`` connects as they will before
anything starts, so a wrong password or an untrusted certificate is one clear error within seconds,
where aiokafka would log it and go on retrying.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT, SASLMechanism

from config.settings import Settings

#: how long ``check_brokers`` waits for one broker
CHECK_TIMEOUT_S = 10.0


class BrokersUnusable(RuntimeError):
    """No broker could be reached, or each refused this client; the message says what to change."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A TLS context trusting ``ssl_cafile`` (else the system's CAs), when the protocol is SSL or SASL_SSL."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        return ssl.create_default_context(cafile=settings.ssl_cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise BrokersUnusable(f"cannot read STREAMSAGA_SSL_CAFILE={settings.ssl_cafile!r}: {exc}") from None


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka producer, consumer or admin client."""
    options: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers,
                               "security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL_"):
        options.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                       sasl_plain_password=settings.sasl_password)
    return options


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """The same, as Faust's ``broker_credentials``."""
    context = ssl_context(settings)
    if settings.security_protocol.startswith("SASL_"):
        return SASLCredentials(username=settings.sasl_username, password=settings.sasl_password,
                               mechanism=SASLMechanism(settings.sasl_mechanism), ssl_context=context)
    if context is not None:
        return SSLCredentials(context)
    return None


async def check_brokers(settings: Settings, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Connect to each broker as the app's clients will until one accepts; raise :class:`BrokersUnusable` if none
    does, saying why the first one refused."""
    options = client_options(settings)
    bootstrap = options.pop("bootstrap_servers")
    reasons = []
    for address in bootstrap.split(","):
        host, _, port = address.rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(host, int(port), request_timeout_ms=int(timeout * 1000),
                                                      **options), timeout)
        except Exception as exc:  # noqa: BLE001 - every way a connection fails becomes the reason shown
            reasons.append(_reason(settings, address, exc, timeout))
            continue
        conn.close()
        return
    raise BrokersUnusable(reasons[0] if len(reasons) == 1 else "; ".join(reasons))


def _reason(settings: Settings, address: str, exc: BaseException, timeout: float) -> str:
    """What went wrong connecting to one broker, and which setting to look at."""
    if isinstance(exc, SaslAuthenticationFailed):
        return (f"the broker at {address} refused user {settings.sasl_username!r} ({settings.sasl_mechanism}): "
                "check STREAMSAGA_SASL_USERNAME, STREAMSAGA_SASL_PASSWORD and STREAMSAGA_SASL_MECHANISM")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the broker at {address} has a certificate this client does not trust ({exc.verify_message}): "
                "set STREAMSAGA_SSL_CAFILE to the CA that signed it")
    if isinstance(exc, ssl.SSLError):
        return (f"TLS with the broker at {address} failed ({exc.reason}): does it listen for "
                f"STREAMSAGA_SECURITY_PROTOCOL={settings.security_protocol} on that port?")
    if isinstance(exc, TimeoutError):
        return f"the broker at {address} did not answer within {timeout:.0f} s"
    if isinstance(exc, KafkaConnectionError) and "closed" in str(exc):
        return (f"the broker at {address} closed the connection: it may expect another "
                f"STREAMSAGA_SECURITY_PROTOCOL than {settings.security_protocol}")
    if isinstance(exc, ConnectionResetError):
        return (f"the broker at {address} reset the connection: it may expect another "
                f"STREAMSAGA_SECURITY_PROTOCOL than {settings.security_protocol}")
    if isinstance(exc, ConnectionRefusedError):
        return f"no broker listens at {address} (STREAMSAGA_BROKER)"
    return f"cannot connect to the broker at {address}: {type(exc).__name__}: {exc}"
