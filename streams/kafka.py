"""Every Kafka client of the project is made here, from the settings: consumers, producers and admin
clients.

This is the only module that knows how to connect (bootstrap servers, client id and, in one spot,
`_connection`, the security options), so a broker setting is added once for every client. A client
that cannot reach the broker on `start()` is closed (nothing is left "Unclosed") and raises
`KafkaUnavailable`, one line naming the address and what to do, which the CLI prints as such.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError

from streams.observability import lag
from streams.observability.telemetry import telemetry
from streams.settings import Settings

__all__ = ["KafkaUnavailable", "admin", "consumer", "producer", "retrying"]

T = TypeVar("T")


class KafkaUnavailable(RuntimeError):
    """The broker cannot be reached; the message says where and what to do, for the person at the terminal."""

    def __init__(self, servers: str) -> None:
        super().__init__(f"Kafka is not reachable at {servers}: start the local stack with `agentstream up`, "
                         "or set KAFKA_BOOTSTRAP_SERVERS to your broker")
        self.servers = servers


def _not_bootstrap_failure(record: logging.LogRecord) -> bool:
    """aiokafka logs each server it cannot bootstrap from; KafkaUnavailable already says so, in one line."""
    return not str(record.msg).startswith('Unable connect to "')


logging.getLogger("aiokafka").addFilter(_not_bootstrap_failure)


def _connection(settings: Settings, role: str) -> dict[str, Any]:
    """The options every client connects with. Security options (SASL/SSL) go here, and only here."""
    return {"bootstrap_servers": settings.kafka_servers, "client_id": f"{settings.app_id}-{role}"}


class _SaysWhenUnreachable:
    """Mixed into each client: a failed bootstrap closes the client and raises KafkaUnavailable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.servers: str = kwargs["bootstrap_servers"]
        super().__init__(*args, **kwargs)

    async def start(self) -> None:
        try:
            await super().start()  # type: ignore[misc]
        except KafkaConnectionError as exc:
            await self._close()
            raise KafkaUnavailable(self.servers) from exc

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
    options = {"enable_auto_commit": False, **overrides, **_connection(settings, "consumer")}
    lag.watch(group_id, topics)
    return _Consumer(*topics, group_id=group_id, **options)


def producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer (not started) that a record is sent by once and kept by every in-sync replica:
    acks="all" and idempotence, unless `overrides` say otherwise (the raw baseline of the bench); records up to
    the settings' max_record_bytes, the one figure for every producer of the project."""
    options = {"acks": "all", "enable_idempotence": True, "max_request_size": settings.max_record_bytes, **overrides,
               **_connection(settings, "producer")}
    return _Producer(**options)


def admin(settings: Settings) -> AIOKafkaAdminClient:
    """An admin client (not started); close it with `close()`."""
    return _Admin(**_connection(settings, "admin"))


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
