"""L1: hot, small values in Redis with a TTL (recent outputs and results, retrieval cache, stats).

A value larger than the cap (1 KiB by default) is not kept here: the tiers below hold it. Writes
are SET with the event id as key, so a redelivered record overwrites itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio

from sinks.base import Held, MemoryRecord, Rejection, Tier, TierUnavailable, digest
from sinks.text import event_text, summary

__all__ = ["RedisTier"]

_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


class RedisTier(Tier):
    """L1 on any Redis-protocol server; every key starts with `prefix` (one deployment's scope)."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "", ttl_s: int = 3600, max_value_bytes: int = 1024) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        self._async: redis.asyncio.Redis | None = None  # made on first use, in the event loop that uses it
        self.prefix = f"{prefix}mem:"
        self.ttl_s = ttl_s
        self.max_value_bytes = max_value_bytes
        self.skipped_large = 0

    def key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    def write(self, batch: Sequence[MemoryRecord]) -> list[Rejection]:
        pipe = self.client.pipeline(transaction=False)
        queued = 0
        for item in batch:
            value = self._value(item)
            if value is None:
                self.skipped_large += 1  # too big for the hot tier: L2/L3 keep it
                continue
            pipe.set(self.key("event", item.id), value, ex=self.ttl_s)
            queued += 1
        if queued:
            try:
                pipe.execute()
            except _DOWN as exc:
                raise TierUnavailable(self.name, str(exc), retry_after=1.0) from exc
        return []

    def _value(self, item: MemoryRecord) -> str | None:
        value = json.dumps(summary(item.event_type, item.id, item.record, event_text(item.event_type, item.record)))
        return None if len(value.encode()) > self.max_value_bytes else value

    def fingerprint(self, item: MemoryRecord) -> str | None:
        value = self._value(item)
        return None if value is None else digest(value)

    def fingerprints(self) -> dict[str, Held]:
        keys = list(self._call(lambda: list(self.client.scan_iter(match=f"{self.prefix}event:*", count=1000))))
        held: dict[str, Held] = {}
        start = len(self.key("event", ""))
        for n in range(0, len(keys), 500):
            chunk = keys[n:n + 500]
            for key, raw in zip(chunk, self._call(self.client.mget, chunk), strict=True):
                if raw is not None:
                    created = int(json.loads(raw).get("created_at") or 0)
                    held[key.decode()[start:]] = Held(digest(raw.decode()), created)
        return held

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _DOWN as exc:
            raise TierUnavailable(self.name, str(exc), retry_after=1.0) from exc

    def get(self, event_id: str) -> dict[str, Any] | None:
        raw = self._call(self.client.get, self.key("event", event_id))
        return json.loads(raw) if raw else None

    def cache_get(self, name: str) -> Any:
        raw = self._call(self.client.get, self.key("cache", name))
        return json.loads(raw) if raw else None

    async def cache_get_async(self, name: str) -> Any:
        """`cache_get` in the caller's event loop: no thread hop for the one round trip of a cache hit."""
        if self._async is None:
            self._async = redis.asyncio.Redis.from_url(self.url, socket_timeout=3, socket_connect_timeout=3)
        try:
            raw = await self._async.get(self.key("cache", name))
        except _DOWN as exc:
            raise TierUnavailable(self.name, str(exc), retry_after=1.0) from exc
        return json.loads(raw) if raw else None

    def cache_has(self, names: Sequence[str]) -> list[bool]:
        """Which of these cache entries exist, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.exists(self.key("cache", name))
        return [bool(n) for n in self._call(pipe.execute)] if names else []

    def cache_set(self, name: str, value: Any, ttl_s: int) -> bool:
        """Cache a JSON value unless it is over the size cap; True when it was stored."""
        return self.cache_set_many({name: value}, ttl_s) == 1

    def cache_set_many(self, values: dict[str, Any], ttl_s: int) -> int:
        """Cache JSON values in one round trip, each unless it is over the size cap; how many were stored."""
        pipe = self.client.pipeline(transaction=False)
        stored = 0
        for name, value in values.items():
            data = json.dumps(value)
            if len(data.encode()) <= self.max_value_bytes * 8:  # a result list may hold a few memories
                pipe.set(self.key("cache", name), data, ex=ttl_s)
                stored += 1
        if stored:
            self._call(pipe.execute)
        return stored

    def add_stats(self, counters: dict[str, float]) -> None:
        """Add to the shared retrieval counters (hits and milliseconds per tier)."""
        pipe = self.client.pipeline(transaction=False)
        for field, amount in counters.items():
            pipe.hincrbyfloat(self.key("stats", "retrieval"), field, amount)
        self._call(pipe.execute)

    def stats(self) -> dict[str, float]:
        raw = self.client.hgetall(self.key("stats", "retrieval"))
        return {k.decode(): float(v) for k, v in raw.items()}

    def count(self) -> int:
        return sum(1 for _ in self.client.scan_iter(match=f"{self.prefix}event:*", count=1000))

    def close(self) -> None:
        self.client.close()
