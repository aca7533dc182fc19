"""The one small interface every memory tier implements, and the record it is given.

A tier takes a batch of records and writes it idempotently (keyed by the event id), so the caller
may hand the same batch again after a crash or a failed attempt. A tier that cannot be reached
raises `TierUnavailable` with `retry_after`: the caller keeps the batch, waits and tries again.
Records that can never be written are returned as rejections, not raised: the rest still go in.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.events import tenant_scoped

__all__ = ["EVENT_ID_FIELDS", "Held", "MemoryRecord", "Rejection", "Tier", "TierUnavailable", "digest", "event_id"]

# The field that identifies each event type (the idempotence key in every tier).
EVENT_ID_FIELDS: dict[str, str] = {
    "AgentOutput": "output_id",
    "TaskResult": "task_id",
    "PromptOutcome": "outcome_id",
    "PromptDecision": "decision_id",
    "CodeChange": "sha",
    "TaskRequested": "task_id",
    "DeadLetter": "deadletter_id",
    "ControlCommand": "command_id",
    "RiskAlert": "alert_id",
    "ModuleDoc": "task_id",  # a stored module document (sinks/docs.py), indexed in L2 from L3
}


def event_id(event_type: str, record: dict[str, Any]) -> str:
    """The stable id of an event: its id field, namespaced by type (a task and its result share a task_id)
    and, for a tenant other than the default one, by tenant (`TaskResult:acme/task-1`): two tenants may use
    one task id, and neither may overwrite the other's memories."""
    return f"{event_type}:{tenant_scoped(record, str(record[EVENT_ID_FIELDS[event_type]]))}"


@dataclass(frozen=True)
class MemoryRecord:
    """One decoded event on its way to the tiers, with where it came from."""

    event_type: str
    record: dict[str, Any]
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None = None
    value: bytes = b""
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", event_id(self.event_type, self.record))


def digest(text: str) -> str:
    """The content hash the integrity check compares (streams/memory/integrity.py)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Held:
    """What a tier holds for one event: the hash of its stored content and the event's created_at."""

    digest: str
    created_at: int


@dataclass(frozen=True)
class Rejection:
    """A record a tier can never write, and why (it goes to agent.deadletters)."""

    record: MemoryRecord
    reason: str


class TierUnavailable(Exception):
    """The tier cannot take writes now (down, overloaded); try the same batch again after `retry_after` s."""

    def __init__(self, tier: str, reason: str, retry_after: float = 1.0) -> None:
        super().__init__(f"{tier} unavailable: {reason}")
        self.tier = tier
        self.retry_after = retry_after


class Tier(ABC):
    """A memory tier: `setup()` once, then `write()` batches; writes are idempotent by event id."""

    name: str = "tier"

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Create what the tier needs (tables, bucket, collection). Idempotent."""

    @abstractmethod
    def write(self, batch: Sequence[MemoryRecord]) -> list[Rejection]:
        """Write the batch (or the part this tier keeps); return records that can never be written.

        Raises TierUnavailable when nothing can be written now; the whole batch is then retried.
        """

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make everything written so far durable (tiers that buffer override this)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def count(self) -> int:
        """How many items the tier holds (rows, vectors, objects); -1 when unknown."""
        return -1

    def fingerprint(self, item: MemoryRecord) -> str | None:
        """The digest of what `write([item])` stores; None when this tier keeps nothing of it by design.
        With `fingerprints()`, it lets `memory verify` compare a tier with the archive."""
        raise NotImplementedError(f"{self.name} cannot be verified")

    def fingerprints(self) -> dict[str, Held]:
        """Event id -> what the tier holds for it, for every event of this scope."""
        raise NotImplementedError(f"{self.name} cannot be verified")
