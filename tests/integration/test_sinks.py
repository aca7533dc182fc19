"""The sink processors on the real stack: exactly once in effect, through redelivery, SIGKILL and an outage.

No test waits a fixed time for silence: each waits until the processors have committed every record."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import psycopg
import pytest
from group_helpers import uncommitted, wait_until_consumed
from memory_helpers import outcome, output, produce, result

from schemas import default_codec
from streams.admin import ensure_topics
from streams.harness import start_sinks, stop
from streams.lifecycle import CRASH_EXIT_CODE
from streams.memory.service import MEMORY_TOPICS, build_processors
from streams.memory.tiers import build_archive
from streams.settings import Settings
from streams.topics import ALL_TOPICS, DEADLETTERS, OUTPUTS, PROMPT_OUTCOMES, RESULTS

pytestmark = pytest.mark.integration

codec = default_codec()


def _events(prefix: str, n: int) -> list[tuple[str, str, dict]]:
    items = []
    for i in range(n):
        tid = f"{prefix}-{i}"
        items.append((RESULTS, "TaskResult", result(tid, f"Result {i}: cached the user lookup for tenant {i}")))
        items.append((OUTPUTS, "AgentOutput", output(tid, f"Step output {i}")))
    items.append((PROMPT_OUTCOMES, "PromptOutcome", outcome(f"{prefix}-0")))
    return items


def _counts(settings: Settings) -> dict[str, int]:
    scope = settings.topic_prefix
    with psycopg.connect(settings.postgres_dsn) as conn:
        def one(sql: str) -> int:
            return conn.execute(sql, (scope,)).fetchone()[0]
        counts = {
            "tasks": one("SELECT count(*) FROM memory_tasks WHERE scope = %s"),
            "steps": one("SELECT count(*) FROM memory_steps WHERE scope = %s"),
            "outcomes": one("SELECT count(*) FROM memory_outcomes WHERE scope = %s"),
            "vectors": one("SELECT count(*) FROM memory_vectors WHERE scope = %s"),
        }
    archive = build_archive(settings)
    offsets = [(e["topic"], e["partition"], e["offset"]) for t in (RESULTS, OUTPUTS, PROMPT_OUTCOMES)
               for e in archive.read_topic(settings.topic(t))]
    counts["archived"] = len(offsets)
    counts["archived_distinct"] = len(set(offsets))
    return counts


def _wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # tables may not exist yet
            pass
        time.sleep(0.5)
    return False


def _fast(settings: Settings) -> Settings:
    return settings.model_copy(update={"sink_batch_records": 20, "sink_batch_wait_s": 0.2,
                                       "archive_batch_records": 25, "archive_batch_wait_s": 0.5})


def _groups(settings: Settings) -> list[tuple[str, list[str]]]:
    """The sink processors' consumer groups and the topics each reads (full names)."""
    return [(f"{settings.app_id}-sink-memory", [settings.topic(t) for t in MEMORY_TOPICS]),
            (f"{settings.app_id}-sink-archive", [settings.topic(t) for t in ALL_TOPICS])]


async def _all_consumed(settings: Settings, timeout_s: float = 150.0) -> None:
    """Every record committed by both sink processors: they commit a batch after writing it, so nothing is
    left in flight and the counts are final."""
    for group, topics in _groups(settings):
        await wait_until_consumed(settings, topics, group, timeout_s)


def _blocked_on(settings: Settings, table: str) -> bool:
    """A session of the sink is waiting for a lock to write to `table`."""
    with psycopg.connect(settings.postgres_dsn) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query LIKE %s", (f"INSERT INTO {table} %",)).fetchone()[0] > 0


@pytest.mark.slow  # make test-slow: make test stays under 15 min on 2 cores
async def test_every_record_lands_once_after_redelivery_and_sigkill(isolated: Settings) -> None:
    """Killed with a batch written to some tiers and not committed: held mid-write by a PostgreSQL lock on
    memory_tasks (so the kill cannot come after everything is committed), then SIGKILLed."""
    settings = _fast(isolated)
    await ensure_topics(settings)
    n = 60
    items = _events("k", n)
    first = [i for i in items if int(i[2]["task_id"].rsplit("-", 1)[1]) < n // 2]
    later = [i for i in items if i not in first]
    poison = b"\x00 not an event"
    await produce(settings, first, [(OUTPUTS, poison)])
    proc = start_sinks(settings, f"sinks-{settings.app_id}-1.log")
    lock = await asyncio.to_thread(psycopg.connect, settings.postgres_dsn)
    try:
        await _all_consumed(settings)
        assert _counts(settings)["tasks"] == n // 2
        await asyncio.to_thread(lock.execute, "LOCK TABLE memory_tasks IN SHARE ROW EXCLUSIVE MODE")
        await produce(settings, later)
        assert await asyncio.to_thread(_wait_for, lambda: _blocked_on(settings, "memory_tasks"), 120)
        os.kill(proc.pid, signal.SIGKILL)  # mid-batch: the tiers before PostgreSQL have it, no commit has
        proc.wait()
        memory_group, memory_topics = _groups(settings)[0]
        assert await uncommitted(settings, memory_group, memory_topics) > 0
        assert _counts(settings)["vectors"] > n // 2  # the batch in hand reached a tier before the kill
        await asyncio.to_thread(lock.rollback)
        await produce(settings, items)  # and the producer sends everything again (new offsets, same ids)
        proc = start_sinks(settings, f"sinks-{settings.app_id}-2.log")
        await _all_consumed(settings)
    finally:
        await asyncio.to_thread(lock.close)
        stop(proc)
    total = 2 * len(items) + 1
    assert _counts(settings) == {"tasks": n, "steps": n, "outcomes": 1, "vectors": n, "archived": total,
                                 "archived_distinct": total}
    from streams.client import read_topic

    dead = [r.record async for r in read_topic(settings, codec, settings.topic(DEADLETTERS), from_beginning=True,
                                               idle_timeout_s=1.5)]
    assert [(d["stage"], d["payload"]) for d in dead] == [("sink-memory-decode", poison)]


async def test_postgres_down_pauses_the_sink_and_it_catches_up(isolated: Settings, tmp_path) -> None:
    """A PostgreSQL of this test's own is stopped mid-run and started again; nothing is lost or doubled."""
    from streams.devstack import free_port
    from streams.devstack.postgres import PostgresPart

    tmp_path.chmod(0o755)
    settings = _fast(isolated).model_copy(update={"postgres_port": free_port(), "data_dir": tmp_path})
    part = PostgresPart(settings, tmp_path)
    part.up()
    await ensure_topics(settings)
    stop = asyncio.Event()
    processors = build_processors(settings, default_codec())
    memory = next(p for p in processors if p.name == "memory")
    jobs = [asyncio.create_task(p.run(stop)) for p in processors]
    try:
        first, second = _events("a", 30), _events("b", 30)
        await produce(settings, first)
        assert await asyncio.to_thread(_wait_for, lambda: _counts(settings)["tasks"] == 30, 120)
        part.down()
        await produce(settings, second)
        assert await asyncio.to_thread(_wait_for, lambda: memory.retries > 0, 120)  # it met the outage
        part.up()
        await wait_until_consumed(settings, _groups(settings)[0][1], memory.group_id, 150)
        counts = _counts(settings)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*jobs), 60)
        part.down()
    assert counts["tasks"] == 60 and counts["steps"] == 60 and counts["outcomes"] == 2 and counts["vectors"] == 60


async def test_a_sink_killed_after_writing_a_batch_and_before_committing_it_writes_nothing_twice(
        isolated: Settings) -> None:
    """The sink process dies (no clean-up) right after its first batch reached every tier and before the
    batch's offsets are committed: the restarted sink reads the batch again and every tier holds each
    event once (rows, vectors and archive objects keyed by event and offset)."""
    settings = _fast(isolated)
    await ensure_topics(settings)
    n = 30
    items = _events("crash", n)
    await produce(settings, items)
    doomed = start_sinks(settings.model_copy(update={"fault_point": "sink-after-write"}),
                         f"sinks-{settings.app_id}-doomed.log")
    assert await asyncio.to_thread(doomed.wait, 120) == CRASH_EXIT_CODE
    written_before = _counts(settings)
    assert sum(written_before.values()) > 0  # a batch (results, outputs or archive records) was in the tiers
    proc = start_sinks(settings, f"sinks-{settings.app_id}-after.log")
    try:
        await _all_consumed(settings)
    finally:
        stop(proc)
    total = len(items)
    assert _counts(settings) == {"tasks": n, "steps": n, "outcomes": 1, "vectors": n, "archived": total,
                                 "archived_distinct": total}
