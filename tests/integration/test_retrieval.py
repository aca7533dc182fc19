"""Retrieval quality, and memories reaching the agents through a worker with the sinks running."""

from __future__ import annotations

import asyncio
import time

import pytest
from memory_helpers import result, run_id, wrap

from schemas import default_codec
from sinks.retrieval import Retriever
from streams.client import ResultWatcher, make_task, read_topic, submit_tasks
from streams.demo.memory import show_memory
from streams.harness import start_sinks, stop
from streams.memory.tiers import build_retriever, build_tiers
from streams.settings import Settings
from streams.topics import OUTPUTS

pytestmark = pytest.mark.integration

# (a past output, a later task that should recall it)
PAIRS = [
    ("Added retry with exponential backoff and jitter to the payments HTTP client",
     "Make the billing API client retry failed requests"),
    ("Planned the zero-downtime migration of the orders table to monthly partitions",
     "How do we partition the invoices table without an outage?"),
    ("Reviewed the session cache eviction change: LRU misses the TTL of logged-out users",
     "Review the new cache expiry policy for user sessions"),
    ("Tests for the CSV importer: empty file, byte order mark, quoted newlines, huge files",
     "Write edge case tests for the spreadsheet import"),
    ("Documented the rate limiter's public API: token bucket size, refill rate, headers",
     "Explain how to configure the request throttling module"),
    ("Compared how Kafka Streams, Flink and Faust route poison messages to dead-letter topics",
     "What do stream processors do with records they cannot parse?"),
    ("Fixed the off-by-one in the search endpoint's pagination cursor",
     "The last result of each search page is repeated on the next page"),
    ("Wrote the load test plan for checkout at twice the Black Friday peak",
     "Prepare a performance test of the purchase flow for holiday traffic"),
    ("Flagged the Terraform change that opens PostgreSQL port 5432 to the whole VPC",
     "Check the infrastructure change that exposes the database network port"),
    ("Runbook for consumer lag alerts: check the group, the slowest partition, then scale consumers",
     "On-call steps when Kafka consumers fall behind"),
    ("Rotated the database credentials with a dual-user scheme and no downtime",
     "Procedure to change the Postgres password safely"),
    ("Benchmarked HNSW against IVF for 50 million embeddings on one machine",
     "Which vector index should we use for a very large embedding collection?"),
]
DISTRACTORS = [
    "Renamed the logo files in the marketing site", "Updated the office holiday calendar",
    "Bumped the version of the date picker widget", "Changed the colour of the footer links",
]


def test_related_past_output_is_in_the_top_3(l2_settings: Settings) -> None:
    settings = l2_settings.isolated(f"t{run_id()}")
    tiers = build_tiers(settings, {"vectors", "postgres"})
    texts = [p[0] for p in PAIRS] + DISTRACTORS
    batch = [wrap("TaskResult", result(f"past-{n}", text)) for n, text in enumerate(texts)]
    for tier in tiers.values():
        tier.setup()
        tier.write(batch)
    retriever = Retriever(None, tiers["vectors"], tiers["postgres"], min_score=0.0)  # type: ignore[arg-type]
    found = 0
    for n, (_, query) in enumerate(PAIRS):
        ids = [m.task_id for m in retriever.search(query, 3).memories]
        found += f"past-{n}" in ids
    rate = found / len(PAIRS)
    print(f"\nretrieval: related output in the top 3 for {found}/{len(PAIRS)} queries ({rate:.0%})")
    assert rate >= 0.75


async def test_agents_get_memories_of_earlier_tasks(isolated: Settings, l2_settings: Settings, worker_factory,
                                                     capsys) -> None:
    """Sinks write L2 and the worker recalls from it, on pgvector and on Weaviate (WEAVIATE_URL handed down)."""
    l2 = {"weaviate_url": l2_settings.weaviate_url, "weaviate_grpc_port": l2_settings.weaviate_grpc_port}
    isolated = isolated.model_copy(update=l2)
    codec = default_codec()
    sinks = start_sinks(isolated, f"sinks-{isolated.app_id}.log")
    try:
        worker_factory(**l2)
        first = [make_task(text) for text, _ in PAIRS[:4]]
        async with ResultWatcher(isolated, codec) as watcher:
            ids = await submit_tasks(isolated, codec, first)
            assert set(await watcher.wait(ids, 120)) == set(ids)
            retriever = build_tiers(isolated, {"vectors"})["vectors"]
            deadline = time.monotonic() + 60
            while retriever.count() < len(first) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            later = [make_task(query) for _, query in PAIRS[:4]]
            ids2 = await submit_tasks(isolated, codec, later)
            results = await watcher.wait(ids2, 120)
        # the demo's memory part, on the same running worker and sinks
        await asyncio.to_thread(show_memory, isolated, later, results)
        shown = capsys.readouterr().out
    finally:
        stop(sinks)
    assert "memories used per task:" in shown and "agentstream memory search" in shown
    assert f"TaskResult:{later[-1]['task_id']}" in shown and "a follow-up task" in shown
    assert set(results) == set(ids2)
    used = [int(r["metadata"].get("memories_used", "0")) for r in results.values()]
    assert sum(1 for u in used if u > 0) >= 3, used
    outputs = [r.record async for r in read_topic(isolated, codec, isolated.topic(OUTPUTS), from_beginning=True,
                                                  idle_timeout_s=1.5) if r.record]
    recalled = {mid for o in outputs if o["task_id"] in ids2
                for mid in o["metadata"].get("memory_ids", "").split(",") if mid}
    assert recalled & {f"TaskResult:{t['task_id']}" for t in first}


async def test_a_prefetched_task_is_recalled_from_l1_by_the_worker(isolated: Settings, worker_factory) -> None:
    """`agentstream sinks --prefetch-only` searches a queued task's memories; the worker started after it reads
    them from L1 (a hit in the retrieval counters), and the task's result says it used them."""
    codec = default_codec()
    tiers = build_tiers(isolated, {"vectors", "postgres"})
    for tier in tiers.values():
        tier.setup()
        tier.write([wrap("TaskResult", result("past-1", PAIRS[0][0]))])
        tier.close()
    retriever = build_retriever(isolated)
    prefetcher = start_sinks(isolated, f"prefetch-{isolated.app_id}.log", prefetch_only=True)
    try:
        task = make_task(PAIRS[0][1])
        await submit_tasks(isolated, codec, [task])
        deadline = time.monotonic() + 90
        while retriever.stats().get("l2", {}).get("hits", 0) < 1:  # counted once its answer is in L1
            assert time.monotonic() < deadline, "the prefetcher did not search the queued task"
            await asyncio.sleep(0.3)
        worker_factory()
        async with ResultWatcher(isolated, codec) as watcher:
            results = await watcher.wait([task["task_id"]], 120)
        assert results[task["task_id"]]["metadata"]["memories_used"] == "1"
        deadline = time.monotonic() + 10  # the worker adds its hit a second after it
        while retriever.stats()["l1"]["hits"] < 1:
            assert time.monotonic() < deadline, "the worker did not read the prefetched memories from L1"
            await asyncio.sleep(0.3)
        stats = retriever.stats()
        assert stats["l2"]["hits"] == 1 and stats["searches"] == 2  # the prefetcher searched; the worker read
    finally:
        stop(prefetcher)
