"""Every Kafka client of the project is made here, from the settings: consumers, producers and admin
clients.

This is the only module that knows how to connect (bootstrap servers, client id and, in one spot,
`connection_options`, the security options), so a broker setting is added once for every client. A client
that cannot reach the broker on `start()` is closed (nothing is left "Unclosed") and raises
`KafkaUnavailable`, one line naming the address and what to do, which the CLI prints as such.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.helpers import create_ssl_context

from streams.observability import lag
from streams.observability.telemetry import telemetry
from streams.settings import Settings

__all__ = ["KafkaSecurityError", "KafkaUnavailable", "admin", "connection_options", "consumer", "producer", "retrying"]

T = TypeVar("T")


class KafkaUnavailable(RuntimeError):
    """The broker cannot be reached; the message says where and what to do, for the person at the terminal."""

    def __init__(self, servers: str, hint: str = "") -> None:
        super().__init__(f"Kafka is not reachable at {servers}: start the local stack with `agentstream up`, "
                         f"or set KAFKA_BOOTSTRAP_SERVERS to your broker{hint}")
        self.servers = servers


class KafkaSecurityError(RuntimeError):
    """The broker is there but refused us: a wrong user or password, an untrusted certificate, a protocol the
    listener does not speak. One line saying which, for the person at the terminal."""


_last_refusal: dict[str, str] = {}  # bootstrap address -> why aiokafka last failed to connect to it


def _not_bootstrap_failure(record: logging.LogRecord) -> bool:
    """aiokafka logs each server it cannot bootstrap from; KafkaUnavailable already says so, in one line.
    The reason is kept, so a refused login or an untrusted certificate can be told apart from a broker down."""
    if not str(record.msg).startswith('Unable connect to "'):
        return True
    address, _, why = record.getMessage().removeprefix('Unable connect to "').partition('": ')
    _last_refusal[address] = why
    return False


def _refused(servers: str, settings_hint: str, reasons: list[str]) -> KafkaSecurityError | None:
    """The security error behind a failed bootstrap of `servers`, if it was one."""
    for why in reasons:
        if "SaslAuthenticationFailed" in why or "Authentication failed" in why:
            return KafkaSecurityError(f"Kafka at {servers} refused the login ({settings_hint}): wrong user name or "
                                      "password (KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD)")
        if "CERTIFICATE_VERIFY_FAILED" in why or "certificate verify failed" in why:
            detail = why.split("certificate verify failed:")[-1].split("(_ssl")[0].strip()
            return KafkaSecurityError(f"the TLS certificate of Kafka at {servers} is not trusted ({detail}): set "
                                      "KAFKA_SSL_CAFILE to the CA that signed it")
        if "UnsupportedSaslMechanism" in why or "mechanism" in why.lower():
            return KafkaSecurityError(f"Kafka at {servers} does not accept this login ({settings_hint}): {why}")
        if "WRONG_VERSION_NUMBER" in why or "record layer failure" in why:
            return KafkaSecurityError(f"Kafka at {servers} does not speak TLS on that port: check "
                                      "KAFKA_SECURITY_PROTOCOL and the port")
    return None


logging.getLogger("aiokafka").addFilter(_not_bootstrap_failure)


def connection_options(settings: Settings, role: str) -> dict[str, Any]:
    """The options every client connects with. Security options (SASL/SSL) go here, and only here."""
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_servers, "client_id": f"{settings.app_id}-{role}",
                               "security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None  # Settings checks it
        options |= {"sasl_mechanism": settings.kafka_sasl_mechanism,
                    "sasl_plain_username": settings.kafka_sasl_username,
                    "sasl_plain_password": settings.kafka_sasl_password.get_secret_value()}
    return options


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS that verifies the broker (against KAFKA_SSL_CAFILE, else the system's CAs) and, given a client
    certificate, presents it. A file that cannot be read is a KafkaSecurityError naming it."""
    try:
        return create_ssl_context(cafile=_path(settings.kafka_ssl_cafile), certfile=_path(settings.kafka_ssl_certfile),
                                  keyfile=_path(settings.kafka_ssl_keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise KafkaSecurityError(f"cannot load the TLS files for Kafka (KAFKA_SSL_CAFILE/CERTFILE/KEYFILE): "
                                 f"{exc}") from exc


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


class _SaysWhenUnreachable:
    """Mixed into each client: a failed bootstrap closes the client and raises KafkaUnavailable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.servers: str = kwargs["bootstrap_servers"]
        self._protocol: str = kwargs.get("security_protocol", "PLAINTEXT")
        user = kwargs.get("sasl_plain_username")
        self._login = f"{self._protocol}, {kwargs.get('sasl_mechanism')} as {user!r}" if user else self._protocol
        super().__init__(*args, **kwargs)

    async def start(self) -> None:
        try:
            await super().start()  # type: ignore[misc]
        except KafkaConnectionError as exc:
            await self._close()
            reasons = [_last_refusal.pop(address.strip(), "") for address in self.servers.split(",")]
            refused = _refused(self.servers, self._login, reasons)
            if refused is not None:
                raise refused from exc
            closed = self._protocol == "PLAINTEXT" and any("closed" in why for why in reasons)
            hint = (" (it closed the connection: if it wants TLS or SASL, set KAFKA_SECURITY_PROTOCOL and the "
                    "KAFKA_SASL_* / KAFKA_SSL_* settings)") if closed else ""
            raise KafkaUnavailable(self.servers, hint) from exc

    async def _close(self) -> None:
        await self.stop()  # type: ignore[attr-defined]


class _Consumer(_SaysWhenUnreachable, AIOKafkaConsumer):
    def subscribe(self, topics: Any = (), pattern: Any = None, listener: Any = None) -> None:
        """Subscribe, and have the group's lag reported (streams/observability/lag.py)."""
        super().subscribe(topics, pattern=pattern, listener=listener)
        lag.watch(self._group_id, topics or ())


class _Producer(_SaysWhenUnreachable, AIOKafkaProducer):
    async def send(self, topic: str, value: Any = None, key: Any = None, partition: int | None = None,
                   timestamp_ms: int | None = None, headers: Any = None) -> Any:
        """Send; inside a trace, with the W3C `traceparent` header of the current span, so the record's
        consumer continues the trace, and timed until the broker confirms (streams/observability/telemetry.py)."""
        sending = telemetry.producing(headers)
        if sending is None:
            return await super().send(topic, value, key, partition, timestamp_ms, headers)
        future = await super().send(topic, value, key, partition, timestamp_ms, sending.headers)
        future.add_done_callback(sending.acked)
        return future


class _Admin(_SaysWhenUnreachable, AIOKafkaAdminClient):
    async def _close(self) -> None:
        await self.close()


def consumer(settings: Settings, *topics: str, group_id: str | None = None, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer (not started) of `topics`, or of nothing yet when the caller assigns partitions itself.

    Without a group nothing is committed: offsets are kept by the caller. aiokafka options go in `overrides`.
    """
    options = {"enable_auto_commit": False, **overrides, **connection_options(settings, "consumer")}
    lag.watch(group_id, topics)
    return _Consumer(*topics, group_id=group_id, **options)


def producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer (not started) that a record is sent by once and kept by every in-sync replica:
    acks="all" and idempotence, unless `overrides` say otherwise (the raw baseline of the bench); records up to
    the settings' max_record_bytes, the one figure for every producer of the project."""
    options = {"acks": "all", "enable_idempotence": True, "max_request_size": settings.max_record_bytes, **overrides,
               **connection_options(settings, "producer")}
    return _Producer(**options)


def admin(settings: Settings) -> AIOKafkaAdminClient:
    """An admin client (not started); close it with `close()`."""
    return _Admin(**connection_options(settings, "admin"))


async def retrying(call: Callable[[], Awaitable[T]], timeout_s: float = 30.0) -> T:
    """`call()` again while it fails for a reason Kafka calls retriable, up to `timeout_s`.

    A cluster with a node down still lists it in its metadata for a while, and an admin request sent
    to it fails with NodeNotReadyError; the next attempt goes to another node.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            return await call()
        except KafkaError as exc:
            if not getattr(exc, "retriable", False) or time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
