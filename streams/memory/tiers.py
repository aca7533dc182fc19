"""Memory tiers built from settings (the one place that knows which backend to use), and the
adapter that lets the task runner recall memories without knowing about tiers."""

from __future__ import annotations

import asyncio
import time
from functools import cache
from pathlib import Path
from typing import Any

from agents.runner import recorded_memory_ids
from sinks.archive import ArchiveTier, LocalStore, S3Store
from sinks.base import Tier
from sinks.embeddings import BatchingEmbedder, MiniLMEmbedder
from sinks.integer_model import DEFAULT_MODEL_CACHE
from sinks.postgres_tier import PostgresTier
from sinks.redis_tier import RedisTier
from sinks.retrieval import Memory, Retriever
from sinks.router import Router
from sinks.vectors import VectorStore, VectorTier
from streams.logs import get_logger
from streams.observability.telemetry import telemetry
from streams.settings import Settings

__all__ = ["MemoryRecall", "build_archive", "build_retriever", "build_tiers", "embedder", "router"]

log = get_logger(__name__)


@cache
def embedder(cache_dir: Path | None = None) -> BatchingEmbedder:
    """One model per process (loading it takes about 0.3 s and 60 MB; deriving it, once per machine and
    cache folder, about 3 s), shared by concurrent callers."""
    return BatchingEmbedder(MiniLMEmbedder(cache_dir=cache_dir or DEFAULT_MODEL_CACHE))


def router(settings: Settings) -> Router:
    return Router.load(settings.memory_routing)


def _vector_store(settings: Settings) -> VectorStore:
    if settings.weaviate_url and settings.vector_store != "pgvector":
        from sinks.weaviate_tier import WeaviateStore

        key = settings.weaviate_api_key.get_secret_value() if settings.weaviate_api_key else None
        return WeaviateStore(settings.weaviate_url, api_key=key, grpc_port=settings.weaviate_grpc_port,
                             scope=settings.topic_prefix)
    from sinks.pgvector_tier import PgVectorStore

    return PgVectorStore(settings.postgres_dsn, scope=settings.topic_prefix)


def build_tiers(settings: Settings, names: set[str] | None = None) -> dict[str, Tier]:
    """The L1-L3 tiers by name ("redis", "vectors", "postgres"); all of them unless `names` says."""
    wanted = names if names is not None else {"redis", "vectors", "postgres"}
    tiers: dict[str, Tier] = {}
    if "redis" in wanted:
        tiers["redis"] = RedisTier(settings.redis_dsn, prefix=settings.topic_prefix, ttl_s=settings.memory_ttl_s,
                                   max_value_bytes=settings.memory_max_value_bytes)
    if "vectors" in wanted:
        tiers["vectors"] = VectorTier(_vector_store(settings), embedder(settings.model_cache_dir),
                                      scope=settings.topic_prefix)
    if "postgres" in wanted:
        tiers["postgres"] = PostgresTier(settings.postgres_dsn, scope=settings.topic_prefix)
    return tiers


def build_archive(settings: Settings) -> ArchiveTier:
    """L4 in S3 when S3_ENDPOINT_URL is set, else in the local archive folder."""
    if settings.s3_endpoint_url:
        secret = settings.aws_secret_access_key
        store: Any = S3Store(settings.s3_bucket, settings.s3_endpoint_url, settings.aws_region,
                             settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else None,
                             secret.get_secret_value() if secret else None)
    else:
        store = LocalStore(settings.archive_dir)
    return ArchiveTier(store)


def build_retriever(settings: Settings, with_archive: bool = False) -> Retriever:
    """Retrieval over the tiers of `memory_scope` (an evaluation run reads production's), else our own."""
    if settings.memory_scope is not None:
        settings = settings.model_copy(update={"topic_prefix": settings.memory_scope})
    tiers = build_tiers(settings)
    return Retriever(tiers["redis"], tiers["vectors"], tiers["postgres"],  # type: ignore[arg-type]
                     build_archive(settings) if with_archive else None,
                     cache_ttl_s=settings.memory_cache_ttl_s, min_score=settings.memory_min_score)


class MemoryRecall:
    """What the task runner calls before an agent call: the top memories for a task, never an error.

    A tier that is down means no memories for this task (logged), not a failed task.
    """

    def __init__(self, retriever: Retriever, k: int) -> None:
        self.retriever, self.k = retriever, k

    async def recall(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        recorded = recorded_memory_ids(task)
        if recorded is not None:
            return await self._recorded(task, recorded)
        started = time.perf_counter()
        try:
            # The prefetcher has usually searched already (L1, no thread); else search here, in a thread,
            # without looking in L1 a second time.
            result = (await self.retriever.recall_cached(task, self.k)
                      or await asyncio.to_thread(self.retriever.recall, task, self.k, read_cache=False))
        except Exception as exc:  # memory is a help, not a dependency of the task
            telemetry.memory_recalled(None, self.k, started)
            log.warning("memory recall failed", stage="retrieve", task_id=task.get("task_id"), error=str(exc)[:200])
            return []
        telemetry.memory_recalled(result, self.k, started)
        return _as_records(result.memories)

    async def _recorded(self, task: dict[str, Any], ids: list[str]) -> list[dict[str, Any]]:
        """A replayed task: the memories production recalled for it, by id (faithful replay)."""
        if not ids:
            return []
        try:
            memories = await asyncio.to_thread(self.retriever.fetch, ids)
        except Exception as exc:  # as for a search: no memories, not a failed task
            log.warning("recorded memories unavailable", stage="retrieve", task_id=task.get("task_id"),
                        error=str(exc)[:200])
            return []
        if len(memories) < len(ids):
            log.warning("some recorded memories are gone", stage="retrieve", task_id=task.get("task_id"),
                        wanted=len(ids), found=len(memories))
        return _as_records(memories)


def _as_records(memories: list[Memory]) -> list[dict[str, Any]]:
    return [{"id": m.id, "text": m.text, "score": m.score, "tier": m.tier} for m in memories]
