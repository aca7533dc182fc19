"""`agentstream bench`, memory part: the embedding model, write throughput of each tier, retrieval p50/p95.

First the embedding model alone: the integer model in use (one text a call, as it always runs) and the
float32 model it replaced in its best case (batches of 32). Each tier gets the same TaskResult records in
batches of 500, written as the sink processor writes them (`Tier.write`); the vectors figures include embedding
(pgvector, and Weaviate when one runs). Retrieval is timed for cold searches (L2/L3, a new query
each time) and for repeated ones (answered by the L1 cache).
"""

from __future__ import annotations

import statistics
import time
import uuid

import click

from sinks.base import MemoryRecord, Tier
from sinks.embeddings import Embedder, MiniLMEmbedder, default_paths
from sinks.retrieval import Retriever
from streams.memory.tiers import build_archive, build_tiers, embedder
from streams.settings import Settings

__all__ = ["memory_bench"]

_WORDS = ("cache", "retry", "index", "migration", "timeout", "queue", "schema", "token", "budget", "review")


def _records(run: str, count: int) -> list[MemoryRecord]:
    out = []
    for n in range(count):
        words = " ".join(_WORDS[(n * 7 + i) % len(_WORDS)] for i in range(6))
        record = {"task_id": f"bench-{run}-{n}", "status": "ok", "output": f"Result {n}: {words} for service {n % 97}",
                  "model": "simulator/fast-1", "cost_usd": 0.0001, "latency_ms": 1.0, "steps": 1, "tokens_in": 10,
                  "tokens_out": 20, "tenant": "default", "error": None, "metadata": {}, "created_at": 1_764_000_000_000}
        out.append(MemoryRecord("TaskResult", record, f"bench-{run}.agent.results", n % 4, n // 4,
                                1_764_000_000_000, None, record["output"].encode()))
    return out


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values[0] if values else 0.0)


def _embedding_rate(label: str, model: Embedder, texts: list[str], batch: int, rows: list[str]) -> None:
    """Sentences/s of a model itself, `batch` texts a call (no cache: every text is new to it)."""
    started = time.perf_counter()
    for first in range(0, len(texts), batch):
        model.embed(texts[first:first + batch])
    rate = len(texts) / (time.perf_counter() - started)
    click.echo(f"embedding, {label:<19}: {rate:>10,.0f} sentences/s  ({len(texts)} sentences, "
               f"{'one' if batch == 1 else batch} a call)")
    rows.append(f"| embedding, {label} | {rate:,.0f} sentences/s |")


def _write_rate(name: str, tier: Tier, batch: list[MemoryRecord], rows: list[str]) -> None:
    tier.setup()
    started = time.perf_counter()
    for i in range(0, len(batch), 500):
        tier.write(batch[i:i + 500])
    rate = len(batch) / (time.perf_counter() - started)
    click.echo(f"sink {name:<17} write  : {rate:>10,.0f} records/s  ({len(batch):,} records, batches of 500)")
    rows.append(f"| sink write, {name} | {rate:,.0f} records/s |")


def _search_times(retriever: Retriever, label: str, run: str, searches: int, repeat: bool, rows: list[str]) -> None:
    times = []
    for n in range(searches):
        # a cold query is new to L1 and to the embedder's cache: a suffix of this run and this label
        query = f"{_WORDS[n % 10]} {_WORDS[(n * 3) % 10]} for service {n % 97}"
        query += "" if repeat else f" #{run}{label}{n}"
        if repeat:
            retriever.search(query, 3)
        times.append(retriever.search(query, 3).ms)
    p50, p95 = _pct(times, 50), _pct(times, 95)
    click.echo(f"retrieval {label:<22}: p50 {p50:6.2f} ms   p95 {p95:6.2f} ms  ({searches} searches, k=3)")
    rows.append(f"| retrieval, {label} | p50 {p50:.2f} ms, p95 {p95:.2f} ms |")


def memory_bench(settings: Settings, records: int = 2000, searches: int = 200) -> list[str]:
    """Print and return the memory figures (BENCHMARKS.md rows). L2 is measured on pgvector, and on Weaviate
    too when one is configured (`agentstream up --with-weaviate` or WEAVIATE_URL): writes and cold searches."""
    run = uuid.uuid4().hex[:8]
    scoped = settings.isolated(f"bench-{run}")
    pgvector = scoped.model_copy(update={"weaviate_url": None})
    tiers = {**build_tiers(pgvector), "archive": build_archive(scoped)}
    batch = _records(run, records)
    rows: list[str] = []
    texts = [r.record["output"] for r in batch[:min(512, records)]]
    _embedding_rate("integer (in use)", embedder(settings.model_cache_dir).inner, texts, 1, rows)
    # The packaged weights as onnxruntime runs them, float32, in its best case (batches): what the integer
    # model replaced.
    weights, tokenizer = default_paths()
    _embedding_rate("float32", MiniLMEmbedder(weights, tokenizer, batch_size=32), texts, 32, rows)
    for name, tier in tiers.items():
        _write_rate("vectors L2, pgvector" if name == "vectors" else name, tier, batch, rows)
    l2 = {"pgvector": tiers["vectors"]}
    if settings.weaviate_url:
        l2["weaviate"] = build_tiers(scoped, {"vectors"})["vectors"]
        # texts of their own: the embedder caches repeated texts, and both figures must include embedding
        _write_rate("vectors L2, weaviate", l2["weaviate"], _records(f"{run}w", records), rows)
    for name, vectors in l2.items():
        retriever = Retriever(tiers["redis"], vectors, tiers["postgres"],  # type: ignore[arg-type]
                              min_score=settings.memory_min_score)
        _search_times(retriever, f"cold (L2 {name}/L3)", run, searches, False, rows)
    retriever = Retriever(tiers["redis"], tiers["vectors"], tiers["postgres"],  # type: ignore[arg-type]
                          min_score=settings.memory_min_score)
    _search_times(retriever, "cached (L1)", run, searches, True, rows)
    for tier in [*tiers.values(), *l2.values()]:
        tier.close()
    return rows
