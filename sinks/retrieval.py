"""Retrieval: find the memories that matter for a query, from the hot tier down, and count where.

`search` looks in L1 (a cache of earlier searches), then L2 (semantic, by vector), then L3
(structured, full text) to fill what L2 did not find; what it found is cached in L1. The archive
(L4) answers only explicit lookups by (topic, partition, offset). Every search adds its tier and
time to shared counters in Redis, so `agentstream memory stats` can show hit rates per tier.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from schemas.events import tenant_of
from sinks.archive import ArchiveTier
from sinks.base import TierUnavailable
from sinks.postgres_tier import PostgresTier
from sinks.redis_tier import RedisTier
from sinks.vectors import VectorTier

__all__ = ["TIERS", "Memory", "Retriever", "SearchResult", "hit_rates"]

TIERS = ("l1", "l2", "l3", "none")


@dataclass(frozen=True)
class Memory:
    """One remembered event: its id, type, task, text, relevance score and the tier it came from."""

    id: str
    type: str
    task_id: str
    text: str
    score: float
    tier: str


@dataclass(frozen=True)
class SearchResult:
    """The memories found, the tier that answered ("l1", "l2", "l3" or "none") and how long it took."""

    memories: list[Memory]
    tier: str
    ms: float
    by_tier: dict[str, int] = field(default_factory=dict)


def _recall_filters(task: dict[str, Any]) -> dict[str, Any]:
    return {"tenant": tenant_of(task), "exclude_tasks": [task["task_id"]]}


def _from_cache(cached: list[dict[str, Any]], excluded: set[str]) -> SearchResult:
    memories = [Memory(**{**m, "tier": "l1"}) for m in cached if m["task_id"] not in excluded]
    return SearchResult(memories, "l1", 0.0, {"l1": len(memories)})


def hit_rates(stats: dict[str, float]) -> dict[str, Any]:
    """Hit rate and mean time per tier from the counters, and the time L1 hits saved."""
    searches = stats.get("searches", 0.0)
    out: dict[str, Any] = {"searches": int(searches)}
    for tier in TIERS:
        hits = stats.get(f"{tier}_hits", 0.0)
        out[tier] = {"hits": int(hits), "rate": hits / searches if searches else 0.0,
                     "mean_ms": stats.get(f"{tier}_ms", 0.0) / hits if hits else 0.0}
    misses = sum(stats.get(f"{t}_hits", 0.0) for t in ("l2", "l3", "none"))
    miss_ms = sum(stats.get(f"{t}_ms", 0.0) for t in ("l2", "l3", "none")) / misses if misses else 0.0
    out["saved_ms"] = max(0.0, out["l1"]["hits"] * (miss_ms - out["l1"]["mean_ms"]))
    return out


class Retriever:
    """search(query, k, filters) over the tiers; any tier may be None (not configured)."""

    def __init__(self, l1: RedisTier | None, l2: VectorTier | None, l3: PostgresTier | None,
                 archive: ArchiveTier | None = None, *, cache_ttl_s: int = 300, min_score: float = 0.35) -> None:
        self.l1, self.l2, self.l3, self.archive = l1, l2, l3, archive
        self.cache_ttl_s, self.min_score = cache_ttl_s, min_score
        # Counters of the hits `recall_cached` found, added to Redis a second later in one round trip (not one
        # per hit); a full search adds its own and these at once.
        self._unsent: Counter[str] = Counter()
        self._unsent_lock = threading.Lock()
        self._sending: asyncio.Task[None] | None = None

    @staticmethod
    def cache_key(query: str, k: int, filters: dict[str, Any]) -> str:
        blob = json.dumps([query, k, filters], sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def search(self, query: str, k: int = 3, filters: dict[str, Any] | None = None, *,
               read_cache: bool = True) -> SearchResult:
        """Filters: event_type, tenant, exclude_tasks (a list of task ids never to return). `read_cache=False`:
        the caller has just looked in L1 (`recall_cached`); the answer is still cached for the next one."""
        filters = dict(filters or {})
        started = time.perf_counter()
        key, excluded = self._keyed(query, k, filters)
        if self.l1 is not None and read_cache:
            cached = self._l1(self.l1.cache_get, key)
            if cached is not None:
                return self._done(_from_cache(cached, excluded), started)
        result = self._search_tiers(query, k, filters)
        if self.l1 is not None:
            self._l1(self.l1.cache_set, key, [asdict(m) for m in result.memories], self.cache_ttl_s)
        return self._done(result, started)

    def _search_tiers(self, query: str, k: int, filters: dict[str, Any]) -> SearchResult:
        """L2, then L3 for what L2 did not find; no cache, no counters."""
        memories: list[Memory] = []
        if self.l2 is not None:
            for hit in self.l2.search(query, k, filters):
                if hit.score >= self.min_score:
                    memories.append(Memory(hit.event_id, hit.event_type, hit.task_id, hit.text, hit.score, "l2"))
        if len(memories) < k and self.l3 is not None and not filters.get("event_type"):
            seen = {m.task_id for m in memories}
            exclude = [*filters.get("exclude_tasks", ()), *seen]
            for row in self.l3.search(query, k - len(memories), filters.get("tenant"), exclude):
                memories.append(Memory(row["id"], row["type"], row["task_id"], row["text"], row["score"], "l3"))
        by_tier = {t: sum(1 for m in memories if m.tier == t) for t in ("l2", "l3")}
        tier = "l2" if by_tier["l2"] else "l3" if by_tier["l3"] else "none"
        return SearchResult(memories, tier, 0.0, by_tier)

    def _keyed(self, query: str, k: int, filters: dict[str, Any]) -> tuple[str, set[str]]:
        """The L1 key of a search and the task ids it excludes. Keyed without the exclusions (each task
        excludes itself): a repeated question from another task is a hit; what this search excludes is
        dropped from the cached answer instead."""
        excluded = set(filters.get("exclude_tasks", ()))
        return self.cache_key(query, k, {n: v for n, v in filters.items() if n != "exclude_tasks"}), excluded

    def _done(self, result: SearchResult, started: float) -> SearchResult:
        ms = (time.perf_counter() - started) * 1000.0
        self._count(result.tier, ms)
        if self.l1 is not None:
            self._l1(self.l1.add_stats, self._take_counters())
        return SearchResult(result.memories, result.tier, ms, result.by_tier)

    def _count(self, tier: str, ms: float) -> None:
        with self._unsent_lock:
            self._unsent.update({"searches": 1, f"{tier}_hits": 1, f"{tier}_ms": ms})

    def _take_counters(self) -> dict[str, float]:
        with self._unsent_lock:
            counters, self._unsent = dict(self._unsent), Counter()
        return counters

    async def _send_counters_soon(self) -> None:
        await asyncio.sleep(1.0)
        counters = self._take_counters()
        if counters and self.l1 is not None:
            await asyncio.to_thread(self._l1, self.l1.add_stats, counters)  # Redis down: they are dropped

    @staticmethod
    def _l1(call: Any, *args: Any) -> Any:
        """L1 is a cache: when Redis is down, search goes on without it."""
        try:
            return call(*args)
        except TierUnavailable:
            return None

    def recall(self, task: dict[str, Any], k: int, *, read_cache: bool = True) -> SearchResult:
        """The memories for a task: its description as the query, its tenant only, never itself."""
        return self.search(task["description"], k, _recall_filters(task), read_cache=read_cache)

    async def recall_cached(self, task: dict[str, Any], k: int) -> SearchResult | None:
        """`recall`'s answer when L1 holds it (the prefetcher searched when the task was queued), else None.

        The worker's path: one Redis round trip in its own event loop, no thread, no model."""
        if self.l1 is None:
            return None
        started = time.perf_counter()
        key, excluded = self._keyed(task["description"], k, _recall_filters(task))
        try:
            cached = await self.l1.cache_get_async(key)
        except TierUnavailable:
            return None
        if cached is None:
            return None
        result = _from_cache(cached, excluded)
        ms = (time.perf_counter() - started) * 1000.0
        self._count("l1", ms)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send_counters_soon())
        return SearchResult(result.memories, "l1", ms, result.by_tier)

    def prefetch(self, tasks: Sequence[dict[str, Any]], k: int) -> int:
        """Search ahead for queued tasks so L1 holds their memories when a worker reaches them; the number
        of searches made. What L1 holds already is skipped; the rest's queries are embedded in one model call
        (the embedder keeps the vectors), searched one by one, and cached and counted in one round trip each."""
        searches: dict[str, tuple[str, dict[str, Any]]] = {}
        for task in tasks:
            filters = _recall_filters(task)
            searches.setdefault(self._keyed(task["description"], k, filters)[0], (task["description"], filters))
        if self.l1 is not None:
            held = self._l1(self.l1.cache_has, list(searches)) or [False] * len(searches)
            searches = {key: search for (key, search), has in zip(searches.items(), held, strict=True) if not has}
        embedding_ms = 0.0  # each search's share of the embedding, so a miss is counted at its whole cost
        if searches and self.l2 is not None:
            started = time.perf_counter()
            self.l2.embedder.embed(list(dict.fromkeys(query for query, _ in searches.values())))
            embedding_ms = (time.perf_counter() - started) * 1000.0 / len(searches)
        answers: dict[str, list[dict[str, Any]]] = {}
        for key, (query, filters) in searches.items():
            started = time.perf_counter()
            result = self._search_tiers(query, k, filters)
            answers[key] = [asdict(m) for m in result.memories]
            self._count(result.tier, (time.perf_counter() - started) * 1000.0 + embedding_ms)
        if answers and self.l1 is not None:
            self._l1(self.l1.cache_set_many, answers, self.cache_ttl_s)
            self._l1(self.l1.add_stats, self._take_counters())
        return len(answers)

    def fetch(self, ids: list[str]) -> list[Memory]:
        """The memories with these ids, in this order, from L3 (the durable tier): a replay's recorded recall.
        Scores are 0 (nothing was searched); an id L3 does not hold is left out."""
        if not ids or self.l3 is None:
            return []
        return [Memory(m["id"], m["type"], m["task_id"], m["text"], 0.0, "l3") for m in self.l3.fetch(ids)]

    def lookup(self, topic: str, partition: int, offset: int) -> dict[str, Any] | None:
        """An archived record by its Kafka coordinates (L4)."""
        if self.archive is None:
            return None
        return self.archive.lookup(topic, partition, offset)

    def stats(self) -> dict[str, Any]:
        return hit_rates(self.l1.stats()) if self.l1 is not None else {}
