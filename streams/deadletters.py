"""Dead-letter envelopes: a record that fails at a stage is kept, with why, and the stream goes on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from agents.clock import now_ms
from schemas import Codec

__all__ = ["Origin", "dead_letter", "send_dead_letter"]

_MAX_ERROR = 2000


@dataclass(frozen=True)
class Origin:
    """Where a record came from: enough to find it again in Kafka."""

    topic: str
    partition: int
    offset: int


def dead_letter(stage: str, origin: Origin, error: BaseException | str, payload: bytes,
                key: bytes | None = None) -> dict[str, Any]:
    """A DeadLetter record. Its id is stable per (origin, stage), so redelivery does not duplicate it."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return {
        "deadletter_id": f"{origin.topic}:{origin.partition}:{origin.offset}:{stage}",
        "stage": stage,
        "topic": origin.topic,
        "partition": origin.partition,
        "offset": origin.offset,
        "error": text[:_MAX_ERROR],
        "payload": payload,
        "key": key,
        "created_at": now_ms(),
    }


async def send_dead_letter(producer: AIOKafkaProducer, topic: str, codec: Codec, stage: str, message: Any,
                           error: BaseException | str) -> None:
    """Send an aiokafka ConsumerRecord that failed at `stage` to the dead-letter `topic`, and wait for the broker."""
    origin = Origin(message.topic, message.partition, message.offset)
    record = dead_letter(stage, origin, error, message.value or b"", message.key)  # a tombstone: empty bytes
    await producer.send_and_wait(topic, codec.encode("DeadLetter", record), key=message.key)
