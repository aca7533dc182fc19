"""The sink processors on the real stack: exactly once in effect, through redelivery, SIGKILL and an outage."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import psycopg
import pytest
from memory_helpers import outcome, output, produce, result

from schemas import default_codec
from streams.admin import ensure_topics
from streams.demo.run import stop_worker
from streams.memory.service import serve, start_sinks
from streams.memory.tiers import build_archive
from streams.settings import Settings
from streams.topics import DEADLETTERS, OUTPUTS, PROMPT_OUTCOMES, RESULTS

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


async def test_every_record_lands_once_after_redelivery_and_sigkill(isolated: Settings) -> None:
    settings = _fast(isolated)
    await ensure_topics(settings)
    n = 60
    items = _events("k", n)
    poison = b"\x00 not an event"
    await produce(settings, items, [(OUTPUTS, poison)])
    proc = start_sinks(settings, f"sinks-{settings.app_id}-1.log")
    try:
        assert await asyncio.to_thread(_wait_for, lambda: _counts(settings)["tasks"] >= 10, 120)
        os.kill(proc.pid, signal.SIGKILL)  # mid-run: some batches written, not all committed
        proc.wait()
        await produce(settings, items)  # and the producer sends everything again (new offsets, same ids)
        proc = start_sinks(settings, f"sinks-{settings.app_id}-2.log")
        total = 2 * len(items) + 1
        expected = {"tasks": n, "steps": n, "outcomes": 1, "vectors": n, "archived": total, "archived_distinct": total}
        await asyncio.to_thread(_wait_for, lambda: _counts(settings) == expected, 150)
        await asyncio.sleep(2)  # and nothing more arrives after
    finally:
        stop_worker(proc)
    assert _counts(settings) == expected
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
    job = asyncio.create_task(serve(settings, stop, with_prefetch=False))
    try:
        first, second = _events("a", 30), _events("b", 30)
        await produce(settings, first)
        assert await asyncio.to_thread(_wait_for, lambda: _counts(settings)["tasks"] == 30, 120)
        part.down()
        await produce(settings, second)
        await asyncio.sleep(4)  # the sink meets the outage, pauses and retries
        part.up()
        done = await asyncio.to_thread(
            _wait_for, lambda: _counts(settings)["tasks"] == 60 and _counts(settings)["steps"] == 60, 120)
        assert done, _counts(settings)
        await asyncio.sleep(1)
        counts = _counts(settings)
    finally:
        stop.set()
        processors = await asyncio.wait_for(job, 60)
        part.down()
    memory = next(p for p in processors if p.name == "memory")
    assert memory.retries > 0  # it did meet the outage
    assert counts["tasks"] == 60 and counts["steps"] == 60 and counts["outcomes"] == 2 and counts["vectors"] == 60
