"""Every dead-letter stage met head-on: a record that decodes but fails *in processing* at that stage lands on
agent.deadletters with the stage, the error and its original bytes, and the good record after it still goes
through. Each failure is a real one: a broker that refuses a record too large for the topic it must go to
(`max.message.bytes`, set per topic as an operator would), a value PostgreSQL cannot store.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import psycopg
import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from memory_helpers import NOW, result

from schemas import default_codec
from streams import kafka
from streams.admin import ensure_topics
from streams.client import ResultWatcher, make_task, submit_tasks
from streams.harness import running, start_sinks
from streams.replay.range import Bound, read_range
from streams.settings import Settings
from streams.topics import CODE_CHANGES, DEADLETTERS, RESULTS, TASKS, TASKS_BY_TENANT

pytestmark = pytest.mark.integration

codec = default_codec()
LIMIT = 4096  # bytes a record batch may have on the topic that must refuse the big record


async def _limit_record_size(settings: Settings, topic: str, max_bytes: int = LIMIT) -> None:
    admin = kafka.admin(settings)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic(topic),
                                                  configs={"max.message.bytes": str(max_bytes)})])
    finally:
        await admin.close()


def _noise(n: int) -> str:
    """Text that does not compress, so it stays large on the wire."""
    return secrets.token_hex(n // 2)


async def _produce(settings: Settings, topic: str, value: bytes, key: bytes, partition: int | None = 0) -> None:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(topic), value, key=key, partition=partition)
    finally:
        await producer.stop()


async def _dead_letters(settings: Settings, want: int, timeout_s: float = 90.0) -> list[dict]:
    """The dead letters, once there are at least `want` of them (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        dead = [r.record for r in await read_range(settings, codec, settings.topic(DEADLETTERS), Bound("earliest"),
                                                   Bound("now"))]
        if len(dead) >= want or time.monotonic() > deadline:
            return dead
        await asyncio.sleep(0.5)


async def _records(settings: Settings, topic: str) -> list[dict]:
    return [r.record for r in await read_range(settings, codec, settings.topic(topic), Bound("earliest"),
                                               Bound("now"))]


async def test_route_a_task_the_by_tenant_topic_refuses_is_dead_lettered(isolated: Settings, worker_factory) -> None:
    """Keyed by something else than its tenant, a task is forwarded to agent.tasks.by-tenant; one too large for
    that topic cannot be, and the next one (same partition, same tenant) is forwarded and answered."""
    worker_factory()
    await _limit_record_size(isolated, TASKS_BY_TENANT)
    big = make_task(f"summarise this log: {_noise(3 * LIMIT)}", tenant="acme")
    value = codec.encode("TaskRequested", big)
    await _produce(isolated, TASKS, value, key=b"not-the-tenant")
    (dead,) = await _dead_letters(isolated, 1)
    assert (dead["stage"], dead["topic"], dead["partition"]) == ("route", isolated.topic(TASKS), 0)
    assert dead["payload"] == value and dead["key"] == b"not-the-tenant"
    assert "MessageSizeTooLarge" in dead["error"], dead["error"]
    good = make_task("add a cache to the user lookup", tenant="acme")
    async with ResultWatcher(isolated, codec) as watcher:
        await _produce(isolated, TASKS, codec.encode("TaskRequested", good), key=b"not-the-tenant")
        results = await watcher.wait([good["task_id"]], 90)
    assert results[good["task_id"]]["status"] == "ok"
    assert [t["task_id"] for t in await _records(isolated, TASKS_BY_TENANT)] == [good["task_id"]]
    assert len(await _records(isolated, DEADLETTERS)) == 1


async def test_process_a_task_whose_result_the_broker_refuses_is_dead_lettered(isolated: Settings,
                                                                              worker_factory) -> None:
    """A result carries its task's metadata: a task with metadata too large for agent.results runs, but its
    result cannot be sent. The task is dead-lettered at `process`, and the next task of the tenant is answered."""
    worker_factory()
    await _limit_record_size(isolated, RESULTS)
    big = make_task("add a cache to the user lookup", tenant="acme", metadata={"ticket": _noise(3 * LIMIT)})
    await submit_tasks(isolated, codec, [big])
    (dead,) = await _dead_letters(isolated, 1)
    assert (dead["stage"], dead["topic"]) == ("process", isolated.topic(TASKS))
    assert dead["payload"] == codec.encode("TaskRequested", big) and dead["key"] == b"acme"
    assert "MessageSizeTooLarge" in dead["error"], dead["error"]
    good = make_task("add a retry to the client", tenant="acme")
    async with ResultWatcher(isolated, codec) as watcher:
        await submit_tasks(isolated, codec, [good])
        results = await watcher.wait([good["task_id"]], 90)
    assert results[good["task_id"]]["status"] == "ok"
    assert [r["task_id"] for r in await _records(isolated, RESULTS)] == [good["task_id"]]


def _change(sha: str, subject: str) -> dict:
    return {"sha": sha, "repository": "shop", "author": "dev", "committed_at": NOW, "message": f"{subject}\n\nbody",
            "files": [{"path": "shop/cart.py", "change": "modified", "added": 1, "removed": 0}],
            "patch": "", "patch_truncated": False, "created_at": NOW}


async def test_code_tasks_a_change_whose_tasks_the_broker_refuses_is_dead_lettered(isolated: Settings,
                                                                                   worker_factory) -> None:
    """A commit's subject goes into the description of its tasks: one too long makes tasks too large for
    agent.tasks. The change is dead-lettered at `code-tasks`; the next change still becomes tasks that run."""
    worker_factory()
    await _limit_record_size(isolated, TASKS)
    bad, good = _change("a" * 40, f"fix: {_noise(3 * LIMIT)}"), _change("b" * 40, "fix: the cart total")
    value = codec.encode("CodeChange", bad)
    await _produce(isolated, CODE_CHANGES, value, key=bad["sha"].encode())
    (dead,) = await _dead_letters(isolated, 1)
    assert (dead["stage"], dead["topic"], dead["partition"]) == ("code-tasks", isolated.topic(CODE_CHANGES), 0)
    assert dead["payload"] == value and dead["key"] == bad["sha"].encode()
    assert "MessageSizeTooLarge" in dead["error"], dead["error"]
    wanted = [f"doc-{'b' * 12}-shop.cart", f"review-{'b' * 12}"]
    async with ResultWatcher(isolated, codec) as watcher:
        await _produce(isolated, CODE_CHANGES, codec.encode("CodeChange", good), key=good["sha"].encode())
        results = await watcher.wait(wanted, 120)
    assert sorted(results) == sorted(wanted) and {r["status"] for r in results.values()} == {"ok"}


async def test_sink_a_tier_rejection_and_a_refused_batch_are_dead_lettered_and_the_rest_stored(
        isolated: Settings) -> None:
    """One batch of results: one PostgreSQL rejects up front (a NUL character in its text), one that breaks the
    batch's write (a created_at past the year 9999), and good ones around them. The batch is written record by
    record, the two bad ones are dead-lettered with their original bytes, and every good one is stored."""
    settings = isolated.model_copy(update={"sink_batch_records": 50, "sink_batch_wait_s": 1.0})
    await ensure_topics(settings)
    nul = {**result("nul", "half\x00way"), "status": "failed"}  # failed: not embedded, so only PostgreSQL sees it
    future = {**result("future", "from the far future"), "status": "failed", "created_at": 300_000_000_000_000}
    good = [result(f"good-{n}", f"cached the user lookup {n}") for n in range(4)]
    batch = [good[0], nul, good[1], future, good[2], good[3]]
    values = {r["task_id"]: codec.encode("TaskResult", r) for r in batch}
    producer = kafka.producer(settings, linger_ms=20)
    await producer.start()
    try:  # one partition, all sent before the sink starts: one batch
        sent = [await producer.send(settings.topic(RESULTS), values[r["task_id"]], key=b"k", partition=0)
                for r in batch]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    def stored() -> set[str]:
        with psycopg.connect(settings.postgres_dsn) as conn:
            return {row[0] for row in conn.execute("SELECT task_id FROM memory_tasks WHERE scope = %s",
                                                   (settings.topic_prefix,))}

    with running(start_sinks(settings, f"sinks-{settings.app_id}.log")):
        dead = await _dead_letters(settings, 2, timeout_s=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not {g["task_id"] for g in good} <= await asyncio.to_thread(stored):
            await asyncio.sleep(0.5)
    by_payload = {d["payload"]: d for d in dead}
    assert len(dead) == 2 and set(by_payload) == {values["nul"], values["future"]}
    assert all(d["stage"] == "sink-postgres" and d["topic"] == settings.topic(RESULTS) for d in dead)
    assert "NUL character" in by_payload[values["nul"]]["error"]
    assert by_payload[values["future"]]["error"].startswith("ValueError: year ")
    assert await asyncio.to_thread(stored) == {g["task_id"] for g in good}
