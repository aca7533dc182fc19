"""Each memory tier against the real local stack: idempotent writes, limits, search, rejections."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
import redis
from memory_helpers import code_change, outcome, output, result, run_id, wrap
from pydantic import SecretStr

from sinks.archive import ArchiveTier, LocalStore, S3Store
from sinks.base import MemoryRecord
from sinks.postgres_tier import PostgresTier
from sinks.redis_tier import RedisTier
from sinks.retrieval import Retriever, hit_rates
from sinks.vectors import VectorTier
from streams.memory.tiers import build_tiers, embedder
from streams.settings import Settings

pytestmark = pytest.mark.integration


def test_redis_tier_is_idempotent_and_keeps_large_values_out(stack_settings: Settings) -> None:
    tier = RedisTier(stack_settings.redis_dsn, prefix=f"t{run_id()}.", ttl_s=60, max_value_bytes=1024)
    small, large = wrap("TaskResult", result("a", "short answer")), wrap("TaskResult", result("b", "x" * 5000))
    assert tier.write([small, large]) == []
    assert tier.write([small, large]) == []
    assert tier.count() == 1 and tier.skipped_large == 2
    assert tier.get(small.id)["text"] == "short answer" and tier.get(large.id) is None
    assert 0 < tier.client.ttl(tier.key("event", small.id)) <= 60
    tier.close()


def test_postgres_tier_upserts_by_id_and_rejects_what_it_can_never_store(stack_settings: Settings) -> None:
    tier = PostgresTier(stack_settings.postgres_dsn, scope=f"t{run_id()}.")
    tier.setup()
    batch = [wrap("TaskResult", result("t1", "first")), wrap("AgentOutput", output("t1", "first")),
             wrap("PromptOutcome", outcome("t1")), wrap("TaskResult", result("t1", "again, later")),
             wrap("CodeChange", code_change("abc123", "Fix rounding in checkout"))]
    assert tier.write(batch) == []
    assert tier.write(batch) == []
    assert tier.counts() == {"memory_tasks": 1, "memory_steps": 1, "memory_outcomes": 1, "memory_code_changes": 1}
    bad = wrap("TaskResult", result("t2", "nul \x00 inside"))
    rejected = tier.write([bad, wrap("TaskResult", result("t3", "fine"))])
    assert [r.record.id for r in rejected] == [bad.id] and "NUL" in rejected[0].reason
    assert tier.counts()["memory_tasks"] == 2
    with psycopg.connect(stack_settings.postgres_dsn) as conn:
        cost = conn.execute("SELECT cost_usd FROM memory_costs WHERE scope = %s", (tier.scope,)).fetchone()
    assert cost == (0.0005,)
    tier.close()


def test_vectors_are_idempotent_carry_the_model_and_find_the_related_text(l2_settings: Settings) -> None:
    tiers = build_tiers(l2_settings.isolated(f"t{run_id()}"), {"vectors"})
    tier = tiers["vectors"]
    assert isinstance(tier, VectorTier)
    assert tier.store.name == ("weaviate" if l2_settings.weaviate_url else "pgvector")
    tier.setup()
    texts = {"r1": "Added exponential backoff and retries to the HTTP client of the payments service",
             "r2": "Documented how to rotate the database credentials every 90 days",
             "r3": "Planned the load test of the checkout flow at twice the peak traffic"}
    batch = [wrap("TaskResult", result(tid, text)) for tid, text in texts.items()]
    tier.write(batch)
    tier.write(batch)
    assert tier.count() == 3
    hits = tier.search("retry failed HTTP calls with backoff", 2)
    assert hits[0].task_id == "r1" and hits[0].extra["model"] == embedder().name
    assert "r1" not in [h.task_id for h in tier.search("retry HTTP", 3, {"exclude_tasks": ["r1"]})]
    tier.close()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_archive_writes_each_record_once_and_finds_it_by_key(stack_settings: Settings, tmp_path, backend: str) -> None:
    if backend == "s3":
        store = S3Store(f"archive-{run_id()}", f"http://127.0.0.1:{stack_settings.s3_port}", "us-east-1",
                        "test", "test")
    else:
        store = LocalStore(tmp_path)
    tier = ArchiveTier(store)
    tier.setup()
    topic = f"t{run_id()}.agent.results"
    records = [wrap("TaskResult", result(f"a{n}", f"text {n}"), topic=topic, offset=n) for n in range(10)]
    tier.write(records[:6])
    tier.write(records[3:])  # overlaps what is archived: only offsets 6..9 are new
    fresh = ArchiveTier(store)  # a restarted process lists what is there
    fresh.write(records)  # everything again: nothing new
    entries = list(fresh.read_topic(topic))
    assert sorted(e["offset"] for e in entries) == list(range(10))
    assert len(store.list(f"{topic}/")) == 2
    assert store.list(f"{topic}/")[0].endswith("/0/00000000000000000000-00000000000000000005.avro")
    assert fresh.lookup(topic, 0, 7)["value"] == b"raw-7"
    assert fresh.lookup(topic, 0, 70) is None


def test_retrieval_goes_down_the_tiers_caches_and_counts(l2_settings: Settings) -> None:
    settings = l2_settings.isolated(f"t{run_id()}")
    tiers = build_tiers(settings)
    for tier in tiers.values():
        tier.setup()
    batch = [wrap("TaskResult", result("p1", "Added a dead-letter queue to the email sender worker")),
             wrap("TaskResult", result("p2", "zebra quokka platypus"))]
    for name in ("vectors", "postgres"):
        tiers[name].write(batch)
    retriever = Retriever(tiers["redis"], tiers["vectors"], tiers["postgres"], min_score=0.5)  # type: ignore[arg-type]
    first = retriever.search("email worker dead letters", 3)
    assert first.tier == "l2" and first.memories[0].task_id == "p1"
    again = retriever.search("email worker dead letters", 3)
    assert again.tier == "l1" and [m.id for m in again.memories] == [m.id for m in first.memories]
    no_vectors = Retriever(tiers["redis"], None, tiers["postgres"])  # type: ignore[arg-type]
    words = no_vectors.search("platypus", 3)  # found by full text (L3)
    assert words.tier == "l3" and words.memories[0].task_id == "p2"
    assert retriever.search("nothing like this at all", 3, {"tenant": "nobody"}).tier == "none"
    stats = hit_rates(tiers["redis"].stats())  # type: ignore[attr-defined]
    assert stats["searches"] == 4 and stats["l1"]["hits"] == 1 and stats["l2"]["hits"] == 1
    assert stats["l3"]["hits"] == 1 and stats["none"]["hits"] == 1


def test_redis_down_is_reported_as_unavailable_with_retry_after() -> None:
    from sinks.base import TierUnavailable
    from streams.devstack import free_port

    tier = RedisTier(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(TierUnavailable) as caught:
        tier.write([wrap("TaskResult", result("x", "y"))])
    assert caught.value.retry_after > 0 and caught.value.tier == "redis"
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    with pytest.raises(TierUnavailable):
        tier.cache_get("x")


def test_search_goes_on_without_l1_when_redis_is_down(stack_settings: Settings) -> None:
    from streams.devstack import free_port

    settings = stack_settings.isolated(f"t{run_id()}")
    l3 = build_tiers(settings, {"postgres"})["postgres"]
    l3.setup()
    l3.write([wrap("TaskResult", result("d1", "Moved the nightly report to a read replica"))])
    down = RedisTier(f"redis://127.0.0.1:{free_port()}/0")
    found = Retriever(down, None, l3).search("nightly report replica", 3)  # type: ignore[arg-type]
    assert found.tier == "l3" and found.memories[0].task_id == "d1"


def test_memory_record_ids_are_namespaced_by_event_type() -> None:
    r = MemoryRecord("TaskResult", result("same", "x"), "t", 0, 0, 0)
    o = MemoryRecord("TaskRequested", {"task_id": "same"}, "t", 0, 1, 0)
    assert r.id == "TaskResult:same" and o.id == "TaskRequested:same"


async def test_recall_for_a_task_is_empty_not_an_error_when_memory_is_down(stack_settings: Settings) -> None:
    from streams.devstack import free_port
    from streams.memory.tiers import MemoryRecall, build_retriever

    down = stack_settings.model_copy(update={"postgres_port": free_port(), "redis_port": free_port()})
    recall = MemoryRecall(build_retriever(down), k=3)
    assert await recall.recall({"task_id": "x", "description": "anything"}) == []


def test_the_archive_goes_to_s3_when_an_endpoint_is_set(stack_settings: Settings) -> None:
    from streams.memory.tiers import build_archive

    settings = stack_settings.model_copy(update={
        "s3_endpoint_url": f"http://127.0.0.1:{stack_settings.s3_port}", "s3_bucket": f"arch-{run_id()}",
        "aws_access_key_id": SecretStr("test"), "aws_secret_access_key": SecretStr("test")})
    archive = build_archive(settings)
    assert isinstance(archive.store, S3Store) and archive.store.bucket == settings.s3_bucket
    archive.setup()
    archive.write([wrap("TaskResult", result("s1", "x"), topic="t.s3", offset=4)])
    assert archive.count() == 1 and archive.lookup("t.s3", 0, 4)["offset"] == 4


def test_l3_fetches_memories_by_id_in_the_order_asked_tenants_included(stack_settings: Settings) -> None:
    """What a faithful replay recalls: events by their memory ids, whichever tenant, in the recorded order."""
    tier = PostgresTier(stack_settings.postgres_dsn, scope=f"t{run_id()}.")
    tier.setup()
    acme = wrap("TaskResult", result("f1", "acme's answer", tenant="acme"))
    batch = [wrap("TaskResult", result("f1", "the default tenant's answer")), acme,
             wrap("AgentOutput", output("f2", "a step")), wrap("CodeChange", code_change("abc123", "Fix rounding"))]
    tier.write(batch)
    ids = ["CodeChange:abc123", acme.id, "TaskResult:gone", "AgentOutput:f2:1:1", "TaskResult:f1"]
    fetched = tier.fetch(ids)
    assert [m["id"] for m in fetched] == ["CodeChange:abc123", "TaskResult:acme/f1", "AgentOutput:f2:1:1",
                                          "TaskResult:f1"]
    assert [m["text"] for m in fetched] == ["Fix rounding\nfiles: cart/checkout.py", "acme's answer", "a step",
                                            "the default tenant's answer"]
    assert tier.fetch([]) == [] and tier.fetch(["PromptOutcome:o-1"]) == []
    tier.close()


async def test_a_replayed_task_recalls_its_recorded_memories_not_a_search(stack_settings: Settings) -> None:
    from agents.runner import RECORDED_MEMORIES
    from streams.memory.tiers import MemoryRecall, build_retriever

    production = stack_settings.isolated(f"t{run_id()}")
    tiers = build_tiers(production, {"vectors", "postgres"})
    for tier in tiers.values():
        tier.setup()
        tier.write([wrap("TaskResult", result("m1", "Added retries to the HTTP client")),
                    wrap("TaskResult", result("m2", "Retry the HTTP client with backoff and jitter"))])
        tier.close()
    replayer = production.isolated("eval-x", memory_scope=production.topic_prefix)  # an evaluation run's worker
    recall = MemoryRecall(build_retriever(replayer), 3)
    task = {"task_id": "q", "description": "Retry the HTTP client with backoff and jitter"}
    searched = await recall.recall(task)
    assert searched[0]["id"] == "TaskResult:m2"  # the search, on production's tiers
    pinned = await recall.recall({**task, "metadata": {RECORDED_MEMORIES: "TaskResult:m1,TaskResult:gone"}})
    assert [(m["id"], m["text"]) for m in pinned] == [("TaskResult:m1", "Added retries to the HTTP client")]
    assert await recall.recall({**task, "metadata": {RECORDED_MEMORIES: ""}}) == []


async def test_prefetch_searches_each_query_once_and_recall_cached_reads_its_answer(stack_settings: Settings) -> None:
    from streams.memory.tiers import build_retriever

    settings = stack_settings.isolated(f"t{run_id()}")
    tiers = build_tiers(settings, {"vectors", "postgres"})
    for tier in tiers.values():
        tier.setup()
        tier.write([wrap("TaskResult", result("m1", "Added retries with backoff to the HTTP client"))])
        tier.close()
    retriever = build_retriever(settings)
    query = "Retry the HTTP client with backoff"
    asked, again, own = ({"task_id": t, "description": query} for t in ("q1", "q2", "m1"))
    other = {"task_id": "q3", "description": "Document the office holiday calendar"}
    assert await retriever.recall_cached(asked, 3) is None  # nothing searched yet: the worker searches itself
    assert retriever.prefetch([asked, again, other], 3) == 2  # one search per query
    assert retriever.prefetch([again, other], 3) == 0  # L1 holds both answers
    hit = await retriever.recall_cached(again, 3)
    assert hit is not None and hit.tier == "l1" and [m.id for m in hit.memories] == ["TaskResult:m1"]
    mine = await retriever.recall_cached(own, 3)
    assert mine is not None and mine.memories == []  # a task never recalls itself
    deadline = time.monotonic() + 10  # hits are added to the counters a second later, in one round trip
    while hit_rates(tiers_stats := retriever.l1.stats())["l1"]["hits"] < 2:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, tiers_stats
        await asyncio.sleep(0.2)
    assert hit_rates(retriever.l1.stats())["searches"] == 4  # type: ignore[union-attr]
