"""The processor guard: decode-or-dead-letter and the guarded loop, for every consumer of the project.

A record that fails at a stage becomes a DeadLetter (stage, topic, partition, offset, error, the
original bytes) and the stream goes on. Handlers see an `Incoming` (an aiokafka ConsumerRecord or a
MemoryRecord both have its five fields), so they are plain callables that unit tests drive without
Kafka; the sends are injected as async callables.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agents.clock import now_ms
from agents.redaction import redact
from schemas import Codec, DecodeError
from schemas.events import Record
from streams.logs import get_logger
from streams.observability.telemetry import telemetry

__all__ = ["Guard", "Handler", "Incoming", "Send", "dead_letter", "topic_sender"]

log = get_logger(__name__)

_MAX_ERROR = 2000

Send = Callable[[bytes | None, bytes], Awaitable[Any]]
"""Produce one record: (key, value) -> awaited until the producer has it."""


@dataclass(frozen=True)
class Incoming:
    """One consumed record, whichever consumer read it: its bytes and where to find it again in Kafka."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, message: Any) -> Incoming:
        """From anything with these five attributes (aiokafka records, MemoryRecord)."""
        return cls(message.value, message.key, message.topic, message.partition, message.offset)


Handler = Callable[[Incoming], Awaitable[None]]


def dead_letter(stage: str, origin: Incoming, error: BaseException | str) -> Record:
    """A DeadLetter record. Its id is stable per (origin, stage), so redelivery does not duplicate it.

    The payload is the original bytes (to be re-driven); the error text is redacted, then cut."""
    text = redact(error if isinstance(error, str) else f"{type(error).__name__}: {error}")
    return {
        "deadletter_id": f"{origin.topic}:{origin.partition}:{origin.offset}:{stage}",
        "stage": stage,
        "topic": origin.topic,
        "partition": origin.partition,
        "offset": origin.offset,
        "error": text[:_MAX_ERROR],
        "payload": origin.value or b"",  # a tombstone: empty bytes
        "key": origin.key,
        "created_at": now_ms(),
    }


def topic_sender(producer: Any, topic: str) -> Send:
    """A `Send` to `topic` through an aiokafka producer, awaited until the broker has the record."""

    async def send(key: bytes | None, value: bytes) -> Any:
        return await producer.send_and_wait(topic, value, key=key)

    return send


class Guard:
    """Dead-letters what fails, through `send_dead`; the record it was handling is given up, the stream goes on."""

    def __init__(self, codec: Codec, send_dead: Send) -> None:
        self.codec, self.send_dead = codec, send_dead

    async def dead(self, stage: str, incoming: Incoming, error: BaseException | str) -> None:
        """Send `incoming` to the dead-letter topic with the stage it failed at and why."""
        log.warning("dead letter", stage=stage, topic=incoming.topic, partition=incoming.partition,
                    offset=incoming.offset, error=redact(str(error))[:300])
        record = dead_letter(stage, incoming, error)
        await self.send_dead(incoming.key, self.codec.encode("DeadLetter", record))
        telemetry.dead_letter(stage)

    async def decode(self, event_type: str, incoming: Incoming, stage: str) -> Record | None:
        """The record, or None after dead-lettering bytes that are not an `event_type` (tombstones too)."""
        started = time.perf_counter()
        try:
            record = self.codec.decode_as(event_type, incoming.value or b"")
        except DecodeError as exc:
            await self.dead(stage, incoming, exc)
            return None
        telemetry.decoded(started)
        return record
