"""L2: events chunked, embedded and stored for semantic search, behind one store interface.

The store is pgvector (default) or Weaviate; both get the same items with ids derived from the
event id and chunk number (UUID v5), so writing an event twice replaces its vectors, never adds.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from schemas.events import tenant_of
from sinks.base import Held, MemoryRecord, Rejection, Tier, digest
from sinks.embeddings import Embedder
from sinks.text import chunk_words, event_text

__all__ = ["NAMESPACE", "VectorHit", "VectorItem", "VectorStore", "VectorTier", "vector_id"]

NAMESPACE = uuid.UUID("5b0e7d4c-6a59-4f61-9d55-2f9c1a6e7a10")


def vector_id(scope: str, event_id: str, chunk: int) -> uuid.UUID:
    """The same (scope, event, chunk) always gets the same id, in every store."""
    return uuid.uuid5(NAMESPACE, f"{scope}|{event_id}|{chunk}")


@dataclass(frozen=True)
class VectorItem:
    """One chunk of one event with its vector and the model that made it."""

    id: uuid.UUID
    event_id: str
    event_type: str
    chunk: int
    task_id: str
    tenant: str
    text: str
    model: str
    vector: np.ndarray
    created_at: int


@dataclass(frozen=True)
class VectorHit:
    """A search hit: the chunk's event, its text and cosine similarity (1 is identical)."""

    event_id: str
    event_type: str
    task_id: str
    text: str
    score: float
    created_at: int
    extra: dict[str, Any] = field(default_factory=dict)


class VectorStore(Protocol):
    """What a vector backend must do: idempotent upsert by id, filtered kNN, count."""

    name: str

    def setup(self) -> None: ...

    def upsert(self, items: Sequence[VectorItem]) -> None: ...

    def search(self, vector: np.ndarray, k: int, filters: dict[str, Any]) -> list[VectorHit]: ...

    def count(self) -> int: ...

    def chunks(self) -> list[tuple[str, int, str, int]]:
        """(event id, chunk, text, created_at) of every stored chunk of this scope (for `memory verify`)."""
        ...

    def close(self) -> None: ...


class VectorTier(Tier):
    """Chunks and embeds the text of each record, then upserts it into the store."""

    name = "vectors"

    def __init__(self, store: VectorStore, embedder: Embedder, *, scope: str = "", max_chunks: int = 16) -> None:
        self.store, self.embedder, self.scope, self.max_chunks = store, embedder, scope, max_chunks

    def setup(self) -> None:
        self.store.setup()

    def write(self, batch: Sequence[MemoryRecord]) -> list[Rejection]:
        pending: list[tuple[MemoryRecord, int, str]] = []
        seen: set[str] = set()
        for item in batch:
            chunks = self._chunks(item) if item.id not in seen else []
            if item.record.get("status", "ok") == "ok":
                seen.add(item.id)
            pending.extend((item, n, text) for n, text in enumerate(chunks))
        if not pending:
            return []
        vectors = self.embedder.embed([text for _, _, text in pending])
        items = [
            VectorItem(vector_id(self.scope, rec.id, n), rec.id, rec.event_type, n,
                       str(rec.record.get("task_id") or rec.record.get("sha") or ""),
                       tenant_of(rec.record), text, self.embedder.name, vec,
                       int(rec.record.get("created_at") or 0))
            for (rec, n, text), vec in zip(pending, vectors, strict=True)
        ]
        self.store.upsert(items)
        return []

    def _chunks(self, item: MemoryRecord) -> list[str]:
        if item.record.get("status", "ok") != "ok":
            return []  # failed steps hold no knowledge worth recalling
        return chunk_words(event_text(item.event_type, item.record))[: self.max_chunks]

    def fingerprint(self, item: MemoryRecord) -> str | None:
        chunks = self._chunks(item)
        return digest("\x00".join(chunks)) if chunks else None

    def fingerprints(self) -> dict[str, Held]:
        by_event: dict[str, list[tuple[int, str, int]]] = {}
        for event_id, chunk, text, created_at in self.store.chunks():
            by_event.setdefault(event_id, []).append((chunk, text, created_at))
        return {event_id: Held(digest("\x00".join(text for _, text, _ in sorted(chunks))), chunks[0][2])
                for event_id, chunks in by_event.items()}

    def search(self, query: str, k: int, filters: dict[str, Any] | None = None) -> list[VectorHit]:
        vector = self.embedder.embed([query])[0]
        return self.store.search(vector, k, filters or {})

    def count(self) -> int:
        return self.store.count()

    def close(self) -> None:
        self.store.close()
