"""The Weaviate store of L2 (weaviate-client v4), used when WEAVIATE_URL is set.

One collection holds every chunk with our own vectors (no server-side vectorizer), cosine HNSW.
Object UUIDs are `vectors.vector_id(...)`, so batch-inserting an event again replaces its objects.
The `scope` property keeps deployments sharing one collection apart, like the pgvector table.
The client is imported here, at import time: imported lazily from two threads at once (a sink and the
prefetcher), Python's import lock reported a deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import weaviate
from weaviate.auth import AuthApiKey
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.config import AdditionalConfig, Timeout

from sinks.base import TierUnavailable
from sinks.vectors import VectorHit, VectorItem

__all__ = ["WeaviateStore"]

_INIT_TIMEOUT_S = 15.0
_TEXT_PROPS = ("scope", "event_id", "event_type", "task_id", "tenant", "text", "model")


class WeaviateStore:
    """Weaviate backend: collections, batch insert, deterministic UUIDs, near-vector search with filters."""

    name = "weaviate"

    def __init__(self, url: str, *, api_key: str | None = None, grpc_port: int = 50051,
                 collection: str = "AgentstreamMemory", scope: str = "") -> None:
        self.url, self.api_key, self.grpc_port = url, api_key, grpc_port
        self.collection_name, self.scope = collection, scope
        self._client: Any = None
        self._lock = threading.Lock()
        self._ready = False

    @property
    def _scope_value(self) -> str:
        """The stored scope: never empty (Weaviate refuses a filter on an empty value, the default prefix)."""
        return f"scope:{self.scope}"

    def _connect(self) -> Any:
        """One client per store, made by the first caller: recalls run in several threads at once."""
        with self._lock:
            if self._client is None:
                parts = urlsplit(self.url)
                secure = parts.scheme == "https"
                try:
                    self._client = weaviate.connect_to_custom(
                        http_host=parts.hostname or "127.0.0.1", http_port=parts.port or (443 if secure else 8080),
                        http_secure=secure, grpc_host=parts.hostname or "127.0.0.1", grpc_port=self.grpc_port,
                        grpc_secure=secure, auth_credentials=AuthApiKey(self.api_key) if self.api_key else None,
                        # the client's 2 s start-up checks fail on a busy 2-core machine
                        additional_config=AdditionalConfig(timeout=Timeout(init=_INIT_TIMEOUT_S)))
                except Exception as exc:  # the client raises several connection error types
                    raise TierUnavailable("vectors", f"weaviate: {exc}", retry_after=2.0) from exc
            return self._client

    def setup(self) -> None:
        client = self._connect()
        if client.collections.exists(self.collection_name):
            self._ready = True
            return
        index = Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
        # Filters compare whole values (a task id "task-1" must not match "task"): field tokenization,
        # except the text itself.
        props = [Property(name=p, data_type=DataType.TEXT,
                          tokenization=Tokenization.WORD if p == "text" else Tokenization.FIELD) for p in _TEXT_PROPS]
        props += [Property(name="chunk", data_type=DataType.INT), Property(name="created_at", data_type=DataType.INT)]
        try:
            client.collections.create(self.collection_name, properties=props,
                                      vector_config=Configure.Vectors.self_provided(vector_index_config=index))
        except Exception:  # another process (sinks, a worker) created it first
            if not client.collections.exists(self.collection_name):
                raise
        self._ready = True

    def _collection(self) -> Any:
        """The collection, created on first use: a worker may search before any sink has written."""
        if not self._ready:
            self.setup()
        return self._connect().collections.get(self.collection_name)

    def upsert(self, items: Sequence[VectorItem]) -> None:
        collection = self._collection()
        with collection.batch.fixed_size(batch_size=200) as batch:
            for i in items:
                batch.add_object(uuid=i.id, vector=i.vector.tolist(), properties={
                    "scope": self._scope_value, "event_id": i.event_id, "event_type": i.event_type,
                    "task_id": i.task_id, "tenant": i.tenant, "text": i.text, "model": i.model, "chunk": i.chunk,
                    "created_at": i.created_at})
        failed = collection.batch.failed_objects
        if failed:
            raise TierUnavailable("vectors", f"weaviate refused {len(failed)} objects: {failed[0].message}")

    def _filters(self, filters: dict[str, Any]) -> Any:
        clauses = [Filter.by_property("scope").equal(self._scope_value)]
        if filters.get("event_type"):
            clauses.append(Filter.by_property("event_type").equal(filters["event_type"]))
        if filters.get("tenant"):
            clauses.append(Filter.by_property("tenant").equal(filters["tenant"]))
        for task in filters.get("exclude_tasks") or ():
            clauses.append(Filter.by_property("task_id").not_equal(task))
        return Filter.all_of(clauses)

    def search(self, vector: np.ndarray, k: int, filters: dict[str, Any]) -> list[VectorHit]:
        response = self._collection().query.near_vector(
            near_vector=vector.tolist(), limit=k * 3, filters=self._filters(filters),
            return_metadata=MetadataQuery(distance=True))
        hits: dict[str, VectorHit] = {}
        for obj in response.objects:
            p = obj.properties
            if p["event_id"] not in hits:
                hits[p["event_id"]] = VectorHit(p["event_id"], p["event_type"], p["task_id"], p["text"],
                                                1.0 - float(obj.metadata.distance or 0.0), int(p["created_at"]),
                                                {"model": p["model"]})
        return list(hits.values())[:k]

    def count(self) -> int:
        result = self._collection().aggregate.over_all(
            total_count=True, filters=Filter.by_property("scope").equal(self._scope_value))
        return int(result.total_count or 0)

    def chunks(self) -> list[tuple[str, int, str, int]]:
        props = ["scope", "event_id", "chunk", "text", "created_at"]
        return [(p["event_id"], int(p["chunk"]), p["text"], int(p["created_at"]))
                for p in (o.properties for o in self._collection().iterator(return_properties=props))
                if p["scope"] == self.scope]

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
