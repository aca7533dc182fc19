"""Dead-letter envelopes: a record that fails at a stage is kept, with why, and the stream goes on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.clock import now_ms

__all__ = ["Origin", "dead_letter"]

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
