"""The Weaviate backend of L2: runs only when WEAVIATE_URL points at a Weaviate server."""

from __future__ import annotations

import os

import pytest
from memory_helpers import result, run_id, wrap

from sinks.vectors import VectorTier
from sinks.weaviate_tier import WeaviateStore
from streams.memory.tiers import embedder

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.environ.get("WEAVIATE_URL"), reason="WEAVIATE_URL is not set")]


def test_weaviate_store_is_idempotent_and_searches_with_filters() -> None:
    store = WeaviateStore(os.environ["WEAVIATE_URL"], api_key=os.environ.get("WEAVIATE_API_KEY"),
                          grpc_port=int(os.environ.get("WEAVIATE_GRPC_PORT", "50051")),
                          collection=f"AgentstreamTest{run_id()}", scope="test.")
    tier = VectorTier(store, embedder(), scope="test.")
    tier.setup()
    try:
        batch = [wrap("TaskResult", result("w1", "Added retries with backoff to the HTTP client", tenant="a")),
                 wrap("TaskResult", result("w2", "Documented the credential rotation runbook", tenant="b"))]
        tier.write(batch)
        tier.write(batch)
        assert tier.count() == 2
        hits = tier.search("retry HTTP calls", 2)
        assert hits[0].task_id == "w1" and hits[0].extra["model"] == embedder().name
        assert [h.task_id for h in tier.search("retry HTTP calls", 2, {"tenant": "b"})] == ["w2"]
        assert "w1" not in [h.task_id for h in tier.search("retry HTTP calls", 2, {"exclude_tasks": ["w1"]})]
    finally:
        store._connect().collections.delete(store.collection_name)
        tier.close()
