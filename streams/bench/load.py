"""The load driver of the benches: workers on topics of a run's own, tasks sent (paced or all at once),
results timed as they arrive, and every topic of the run deleted afterwards.

Each figure of `agentstream bench` that runs real workers goes through here, so they measure the same way.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
import psutil

from agents.clock import now_ms
from schemas import default_codec
from schemas.events import Record, tenant_key_of
from streams import kafka
from streams.admin import delete_topics, ensure_topics
from streams.client import ResultWatcher, dead_letter_line, make_task
from streams.harness import running, start_sinks, start_worker
from streams.settings import Settings
from streams.topics import TASKS, table_specs, topic_specs

__all__ = ["LoadRun", "WorkerGroup", "bench_workers", "cpu_seconds", "drive", "local_broker_pids"]


@dataclass(frozen=True)
class LoadRun:
    """What a load run saw: the results, when each task was created and when its result was read (epoch ms)."""

    sent: int
    results: dict[str, Record]
    created_ms: dict[str, float]
    received_ms: dict[str, float]
    seconds: float  # from the first send to the last result (or the timeout)
    worker_cpu_s: float = 0.0  # CPU the workers spent from the first send until quiet after the last result
    prefetcher_cpu_s: float = 0.0  # CPU the prefetcher spent over the same span, when one ran
    broker_cpu_s: float = 0.0  # CPU the local Kafka brokers spent over the same span (0: Kafka runs elsewhere)

    @property
    def rate(self) -> float:
        return len(self.results) / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_task(self) -> float:
        return self._per_task_ms(self.worker_cpu_s)

    @property
    def prefetcher_ms_per_task(self) -> float:
        return self._per_task_ms(self.prefetcher_cpu_s)

    @property
    def broker_ms_per_task(self) -> float:
        return self._per_task_ms(self.broker_cpu_s)

    def _per_task_ms(self, cpu_s: float) -> float:
        return 1000 * cpu_s / len(self.results) if self.results else 0.0


@dataclass(frozen=True)
class WorkerGroup:
    """The settings of a bench run's workers (topics of its own) and their process ids (and the prefetcher's,
    and the local stack's Kafka brokers')."""

    settings: Settings
    pids: tuple[int, ...]
    prefetcher_pids: tuple[int, ...] = ()
    broker_pids: tuple[int, ...] = ()


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes (all their threads) have used so far; 0 for one that is gone."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def local_broker_pids(settings: Settings) -> tuple[int, ...]:
    """The process ids of the Kafka brokers `agentstream up` started; none when Kafka runs elsewhere."""
    from streams.devstack.stack import LocalStack

    return tuple(pid for node in LocalStack(settings).kafka if (pid := node.pid) is not None)


@contextmanager
def bench_workers(settings: Settings, workers: int = 1, *, prefetcher: bool = False,
                  **overrides: Any) -> Iterator[WorkerGroup]:
    """`workers` workers in one consumer group on topics of this run's own (settings `isolated`, with
    `overrides`), and with `prefetcher` the memory prefetcher beside them (`sinks --prefetch-only`, as a
    deployment with recall on runs it). All are stopped and the run's topics and ledgers deleted when the
    block ends."""
    run = uuid.uuid4().hex[:8]
    bench = settings.isolated(f"bench-{run}", **overrides)
    asyncio.run(ensure_topics(bench))
    helpers = [start_sinks(bench, f"bench-prefetch-{run}.log", prefetch_only=True)] if prefetcher else []
    try:
        with running(*(start_worker(bench, f"bench-worker-{run}-{n}.log") for n in range(workers)), *helpers) as all_:
            yield WorkerGroup(bench, tuple(c.pid for c in all_[:workers]), tuple(c.pid for c in helpers),
                              local_broker_pids(settings))
    finally:
        asyncio.run(delete_topics(bench, [s.name for s in topic_specs(bench) + table_specs(bench)]))


async def drive(group: WorkerGroup, tasks: list[Record], *, pace_per_s: float | None = None,
                warm_up_timeout_s: float = 180.0, timeout_s: float = 600.0) -> LoadRun:
    """Send one warm-up task and wait for it (the workers have joined their group), then send `tasks`
    keyed by tenant, `pace_per_s` a second (in batches every 10 ms) or all at once, and wait for them;
    the workers' CPU is counted from the first send until they are quiet after the last result."""
    settings, codec = group.settings, default_codec()
    received: dict[str, float] = {}
    created: dict[str, float] = {}
    waiting: asyncio.Task[dict[str, Record]] | None = None
    async with ResultWatcher(settings, codec) as watcher:
        producer = kafka.producer(settings, linger_ms=1)
        await producer.start()
        try:
            warm = make_task("warm-up: the worker has joined its group when this comes back")
            await producer.send_and_wait(settings.topic(TASKS), codec.encode("TaskRequested", warm),
                                         key=tenant_key_of(warm))
            if not await watcher.wait([warm["task_id"]], warm_up_timeout_s):
                tid = warm["task_id"]
                why = (dead_letter_line(tid, watcher.dead[tid]) if tid in watcher.dead
                       else f"no result in {warm_up_timeout_s:g} s")
                raise click.ClickException(f"a bench worker did not answer its warm-up task ({why}); "
                                           "see its log in the data folder")
            # Read results while sending, so a result's arrival time is when it really arrived.
            waiting = asyncio.create_task(watcher.wait(
                [t["task_id"] for t in tasks], timeout_s,
                on_result=lambda r: received.setdefault(r["task_id"], time.time() * 1000),
                on_dead=lambda tid, dead: click.echo(dead_letter_line(tid, dead), err=True)))
            started = time.perf_counter()
            cpu_at_start, prefetcher_at_start = cpu_seconds(group.pids), cpu_seconds(group.prefetcher_pids)
            broker_at_start = cpu_seconds(group.broker_pids)
            batch = max(1, int(pace_per_s / 100)) if pace_per_s else max(1, len(tasks))
            for first in range(0, len(tasks), batch):
                for task in tasks[first:first + batch]:
                    task["created_at"] = now_ms()
                    created[task["task_id"]] = task["created_at"]
                    await producer.send(settings.topic(TASKS), codec.encode("TaskRequested", task),
                                        key=tenant_key_of(task))
                if pace_per_s:
                    await asyncio.sleep(max(0.0, started + (first + batch) / pace_per_s - time.perf_counter()))
            await producer.flush()
            await producer.stop()
            results = await waiting
            seconds = time.perf_counter() - started
            prefetcher_used = cpu_seconds(group.prefetcher_pids) - prefetcher_at_start
            broker_used = cpu_seconds(group.broker_pids) - broker_at_start
            cpu_used = await _cpu_until_idle(group.pids) - cpu_at_start
        finally:
            await producer.stop()
            if waiting is not None and not waiting.done():
                waiting.cancel()
        return LoadRun(len(tasks), results, created, received, seconds, cpu_used, prefetcher_used, broker_used)


async def _cpu_until_idle(pids: Sequence[int], quiet_share: float = 0.1, timeout_s: float = 10.0) -> float:
    """The processes' CPU seconds once they have gone quiet (under `quiet_share` of a core for half a second):
    work a worker defers past its last answer (litellm runs its success logging from a queue) is its work too."""
    deadline, used = time.monotonic() + timeout_s, cpu_seconds(pids)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = cpu_seconds(pids)
        if now - used < quiet_share * 0.5 * max(1, len(pids)):
            return now
        used = now
    return used
