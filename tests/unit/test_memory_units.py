from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sinks.archive import object_name
from sinks.embeddings import DIMENSIONS, MiniLMEmbedder
from sinks.retrieval import hit_rates
from sinks.router import Router, RoutingError
from sinks.text import chunk_words, event_text


def test_the_packaged_routing_policy_and_a_custom_one(tmp_path: Path) -> None:
    policy = Router.load()
    assert "vectors" in policy.tiers_for("TaskResult") and policy.tiers_for("PromptOutcome") == ("postgres",)
    assert policy.tiers_for("Unknown") == ()
    custom = tmp_path / "routing.yaml"
    custom.write_text("routes:\n  TaskResult: [redis]\ndefault: [postgres]\n")
    assert Router.load(custom).tiers_for("AgentOutput") == ("postgres",)
    assert Router.load(custom).tiers == {"redis", "postgres"}
    with pytest.raises(RoutingError):
        Router.from_mapping({"routes": {"TaskResult": ["s3"]}})
    with pytest.raises(RoutingError):
        Router.from_mapping(["not", "a", "mapping"])


def test_embeddings_are_unit_vectors_and_similar_texts_are_close() -> None:
    model = MiniLMEmbedder()
    v = model.embed(["retry the HTTP call with backoff", "retry HTTP requests with exponential backoff",
                     "the office holiday calendar"])
    assert v.shape == (3, DIMENSIONS) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > 0.6 > v[0] @ v[2]
    assert model.embed([]).shape == (0, DIMENSIONS)


def test_the_integer_model_is_built_once_stays_near_float32_and_gives_a_text_one_vector(tmp_path: Path) -> None:
    from sinks.embeddings import default_paths
    from sinks.integer_model import integer_model

    weights, tokenizer = default_paths()
    built = integer_model(weights, tmp_path)
    assert built.parent == tmp_path and integer_model(weights, tmp_path) == built  # cached: not built again
    marker = built.with_suffix(".source")  # the weights it was built from; no work files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [built.name, marker.name]
    older = tmp_path / "minilm-l6-qint8-0000000000000000.onnx"  # a build of an older recipe, of the same weights
    older.write_bytes(b"")
    older.with_suffix(".source").write_text(str(weights))
    other = tmp_path / "minilm-l6-qint8-1111111111111111.onnx"  # another environment's build: not ours to remove
    other.write_bytes(b"")
    other.with_suffix(".source").write_text("/elsewhere/model.onnx")
    built.unlink()  # built again: the older build of the same weights goes, the other environment's stays
    assert integer_model(weights, tmp_path) == built and not older.exists() and other.exists()
    other.unlink()
    other.with_suffix(".source").unlink()
    import onnx

    ops = [n.op_type for n in onnx.load(str(built)).graph.node]  # every layer's attention is one fused node
    assert ops.count("MultiHeadAttention") == 6 and "Softmax" not in ops and ops.count("MatMulInteger") == 36
    assert ops.count("Gelu") == 6 and "Erf" not in ops  # and every feed-forward GELU
    with pytest.raises(ValueError, match="batch_size must be 1"):  # no padding mask: one text a call, never padded
        MiniLMEmbedder(built, tokenizer, batch_size=8)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(RuntimeError, match="AGENTSTREAM_MODEL_CACHE"):
        integer_model(weights, blocked / "models")  # a folder that cannot be made
    blocked.unlink()
    exact = MiniLMEmbedder(weights, tokenizer, batch_size=32)  # the packaged weights, run in float32
    fast = MiniLMEmbedder(built, tokenizer)
    texts = ["Added retry with exponential backoff and jitter to the payments HTTP client",
             "Make the billing API client retry failed requests", "Updated the office holiday calendar",
             "Rotated the database credentials with a dual-user scheme and no downtime",
             "Procedure to change the Postgres password safely", "hi"]
    a, b = exact.embed(texts), fast.embed(texts)
    assert float(np.min(np.sum(a * b, axis=1))) >= 0.98  # measured: 0.99 and up
    assert float(np.max(np.abs(a @ a.T - b @ b.T))) <= 0.05  # similarities between texts move little
    alone = np.vstack([fast.embed([t]) for t in texts])
    assert np.array_equal(alone, b)  # the same vector alone as among others


def test_text_chunks_and_object_names() -> None:
    assert chunk_words("") == [] and chunk_words("a b c") == ["a b c"]
    chunks = chunk_words(" ".join(str(n) for n in range(400)), size=160, overlap=20)
    assert len(chunks) == 3 and chunks[1].split()[0] == "140"
    assert event_text("CodeChange", {"message": "fix", "files": ["a.py"]}) == "fix\nfiles: a.py"
    assert event_text("PromptOutcome", {}) == ""
    assert object_name("agent.results", 0, 3, 5, 9) == "agent.results/1970-01-01/3/" + f"{5:020d}-{9:020d}.avro"


def test_hit_rates_and_time_saved() -> None:
    stats = hit_rates({"searches": 4, "l1_hits": 2, "l1_ms": 2.0, "l2_hits": 2, "l2_ms": 20.0})
    assert stats["l1"]["rate"] == 0.5 and stats["l2"]["mean_ms"] == 10.0
    assert stats["saved_ms"] == pytest.approx(2 * (10.0 - 1.0))
    assert hit_rates({})["searches"] == 0


def test_concurrent_embeddings_are_joined_and_each_caller_gets_its_own_vectors() -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    from sinks.embeddings import BatchingEmbedder

    inner = MiniLMEmbedder()

    class FirstCallWaits:
        """The first model call waits until the other callers have queued (so the test is not a race)."""

        name, dimensions, first = inner.name, inner.dimensions, True

        def embed(self, texts: list[str]) -> np.ndarray:
            deadline = time.monotonic() + 10
            while self.first and len(batching._pending) < 7 and time.monotonic() < deadline:
                time.sleep(0.005)
            self.first = False
            return inner.embed(texts)

    batching = BatchingEmbedder(FirstCallWaits())
    texts = [f"task {n}: add a cache to service {n}" for n in range(24)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda t: batching.embed([t]), texts))
    expected = inner.embed(texts)
    assert all(np.allclose(g[0], e, atol=1e-4) for g, e in zip(got, expected, strict=True))
    assert batching.calls < len(texts)  # the callers that queued meanwhile shared one model call
    assert batching.embed([]).shape == (0, DIMENSIONS)


def test_an_embedding_failure_reaches_the_caller() -> None:
    from sinks.embeddings import BatchingEmbedder

    class Broken:
        name, dimensions = "broken", 3

        def embed(self, texts: list[str]) -> np.ndarray:
            raise RuntimeError("model file damaged")

    with pytest.raises(RuntimeError, match="damaged"):
        BatchingEmbedder(Broken()).embed(["x"])


def test_repeated_texts_are_embedded_once_and_give_the_same_vectors() -> None:
    from sinks.embeddings import BatchingEmbedder

    inner = MiniLMEmbedder()

    class Counting:
        name, dimensions, texts = inner.name, inner.dimensions, 0

        def embed(self, texts: list[str]) -> np.ndarray:
            self.texts += len(texts)
            return inner.embed(texts)

    counting = Counting()
    batching = BatchingEmbedder(counting, cache_size=2)
    first = batching.embed(["retry the HTTP client", "rotate the keys"])
    again = batching.embed(["rotate the keys", "a new text", "retry the HTTP client"])
    assert counting.texts == 3 and batching.cache_hits == 2  # only "a new text" reached the model
    assert np.allclose(again[0], first[1]) and np.allclose(again[2], first[0])
    assert np.allclose(again[1], inner.embed(["a new text"])[0], atol=1e-4)
    batching.embed(["retry the HTTP client"])  # still cached
    assert counting.texts == 3
    batching.embed(["rotate the keys"])  # the cache holds 2: the least recently used one was dropped
    assert counting.texts == 4


def test_l2_stays_on_pgvector_when_asked_even_with_a_weaviate_configured(tmp_path: Path) -> None:
    from streams.devstack.weaviate import with_embedded_weaviate
    from streams.memory.tiers import build_tiers
    from streams.settings import Settings

    weaviate = Settings(WEAVIATE_URL="http://127.0.0.1:1", AGENTSTREAM_DATA_DIR=tmp_path)
    pinned = weaviate.model_copy(update={"vector_store": "pgvector"})
    store = build_tiers(pinned, {"vectors"})["vectors"].store  # type: ignore[attr-defined]
    assert store.name == "pgvector"
    bare = pinned.model_copy(update={"weaviate_url": None})
    assert with_embedded_weaviate(bare) is bare  # a running local Weaviate is not picked up either
