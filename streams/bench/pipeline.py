"""`agentstream bench`: the pipeline measured against raw aiokafka in the same run, on the same broker.

The raw baseline forwards bytes consume -> produce with batched aiokafka (`getmany`), the ceiling for
any Kafka processor in Python here. The pipeline figure is tasks/s end to end (submit -> TaskResult
read back) through one worker, with the simulator answering instantly, so it measures our overhead:
with memory recall on (the default) and off, each against litellm's solo call rate (the worker's call
path in process, no Kafka) measured in the same run, with the worker's CPU time per task.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
import uuid
from dataclasses import dataclass
from typing import Any

import click

from schemas import default_codec
from streams import kafka
from streams.admin import delete_topics, ensure_topics
from streams.bench.agents import settled_call_rate
from streams.bench.load import LoadRun, bench_workers, drive
from streams.client import make_task
from streams.settings import Settings
from streams.topics import TopicSpec

__all__ = ["Measurement", "pipeline_run", "raw_forward_rate", "run_bench"]


@dataclass(frozen=True)
class Measurement:
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


async def raw_forward_rate(settings: Settings, events: int, value_size: int) -> Measurement:
    """Consume `events` records and produce each to another topic with plain aiokafka, batched."""
    run = uuid.uuid4().hex[:8]
    src, dst = f"bench-{run}.raw.in", f"bench-{run}.raw.out"
    await ensure_topics(settings, [TopicSpec(src, settings.partitions), TopicSpec(dst, settings.partitions)])
    # aiokafka's own defaults (acks=1, no idempotence): the baseline as anyone would first write it.
    producer = kafka.producer(settings, acks=1, enable_idempotence=False, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        value = os.urandom(value_size)
        for n in range(events):  # prefill, not timed
            await producer.send(src, value, key=str(n).encode())
        await producer.flush()
        consumer = kafka.consumer(settings, src, group_id=f"bench-{run}", auto_offset_reset="earliest",
                                  max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            done, started = 0, None
            while done < events:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                started = started or time.perf_counter()
                for messages in batch.values():
                    for m in messages:
                        await producer.send(dst, m.value, key=m.key)
                    done += len(messages)
                await producer.flush()
                if batch:
                    await consumer.commit()
            return Measurement(done, time.perf_counter() - (started or time.perf_counter()))
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
        await delete_topics(settings, [src, dst])


def pipeline_run(settings: Settings, count: int, **overrides: Any) -> tuple[LoadRun, dict[str, Any]]:
    """`count` tasks end to end through one worker on topics of this run's own (settings `overrides`); with
    recall on, the prefetcher runs beside it, as in a deployment; L2 is pgvector (the default). Returns the
    run and its recall counters (`hit_rates`: which tier answered the worker's searches; empty with recall off)."""
    tasks = [make_task(f"benchmark task {n}: add a cache in front of the user lookup") for n in range(count)]
    recall = overrides.get("memory_context_k", settings.memory_context_k) > 0
    # The default settings: L2 on pgvector, even when `make bench` started a Weaviate for the memory figures.
    overrides = {"simulator_latency_ms": 0.0, "vector_store": "pgvector", **overrides}
    with bench_workers(settings, 1, prefetcher=recall, **overrides) as workers:
        run = asyncio.run(drive(workers, tasks, warm_up_timeout_s=120))
        return run, _recall_counters(workers.settings) if recall else {}


def _recall_counters(settings: Settings, timeout_s: float = 6.0) -> dict[str, Any]:
    """The run's retrieval counters (the prefetcher's searches and the worker's), once the worker has added
    its last: it sends them a second late, so they are read until they stay the same for 1.5 s."""
    from sinks.retrieval import hit_rates
    from streams.memory.tiers import build_tiers

    l1 = build_tiers(settings, {"redis"})["redis"]
    try:
        deadline, last = time.monotonic() + timeout_s, None
        while True:
            counters = l1.stats()  # type: ignore[attr-defined]
            if counters == last or time.monotonic() > deadline:
                return hit_rates(counters)
            last = counters
            time.sleep(1.5)
    finally:
        l1.close()


def pipeline_figures(settings: Settings, tasks: int, calls: int) -> Measurement:
    """Warm-up runs (`_warm_up`), litellm's solo call rate, the pipeline with recall on (the default) and off,
    the solo rate again; prints each pipeline run against the mean of the two solo rates (a shared 2-core
    machine drifts by 20% or more in a minute: one solo figure taken before would credit or blame the pipeline
    for the drift), with the worker's and the broker's CPU per task, and recall's share of the worker's.
    Returns the default's figure."""
    _warm_up(settings, tasks)
    before = _solo_rate(settings, calls)
    runs: dict[bool, tuple[LoadRun, dict[str, Any]]] = {}
    for recall in (True, False):
        runs[recall] = pipeline_run(settings, tasks, memory_context_k=settings.memory_context_k if recall else 0)
    after = _solo_rate(settings, calls)
    solo = (before + after) / 2
    click.echo(f"litellm solo (worker call path, no Kafka): {solo:>7,.0f} calls/s   ({1000 / solo:.2f} ms per call; "
               f"{before:,.0f} before the pipeline runs, {after:,.0f} after)")
    for recall, (run, counters) in runs.items():
        click.echo(f"pipeline end to end, recall {'on ' if recall else 'off'}  : {run.rate:>10,.0f} tasks/s   "
                   f"({run.rate / solo:.0%} of litellm solo; worker CPU {run.cpu_ms_per_task:.2f} ms/task; "
                   f"{len(run.results):,}/{tasks:,} tasks, 1 worker, concurrency {settings.worker_concurrency}, "
                   f"instant simulator{_broker_note(run)})")
        if counters and run.results:
            l1 = counters["l1"]["hits"] / len(run.results)
            click.echo(f"  recall with the prefetcher  : {l1:>10.0%}  of the worker's recalls read from L1 "
                       f"(prefetched; L2 pgvector); the prefetcher's CPU {run.prefetcher_ms_per_task:.2f} ms/task")
    on, off = runs[True][0].cpu_ms_per_task, runs[False][0].cpu_ms_per_task
    if on > 0:
        share = max(0.0, on - off) / on
        click.echo(f"recall's share of worker CPU : {share:>10.0%}  ({on - off:.2f} of {on:.2f} ms/task)")
    return Measurement(len(runs[True][0].results), runs[True][0].seconds)


def _warm_up(settings: Settings, tasks: int, settled: float = 0.85, most: int = 4) -> None:
    """Unmeasured runs until the local broker's CPU a task stops falling (to over `settled` of the run before),
    at most `most`: its JVM compiles as it goes, and a fresh broker spent 2.6, 2.0, 1.2, then 1.1 ms of CPU
    a task on four runs in a row (measured), so a run measured before it settles pays for the compiling, not
    for the pipeline. With Kafka elsewhere (no broker to watch), one run."""
    before = None
    for n in range(1, most + 1):
        warm, _ = pipeline_run(settings, tasks)
        broker = warm.broker_ms_per_task
        click.echo(f"pipeline warm-up {n} (not counted): {warm.rate:>6,.0f} tasks/s   ({len(warm.results):,}/{tasks:,} "
                   f"tasks, recall on{_broker_note(warm)})")
        if not broker or (before is not None and broker > settled * before):
            return
        before = broker


def _broker_note(run: LoadRun) -> str:
    return f"; Kafka broker CPU {run.broker_ms_per_task:.2f} ms/task" if run.broker_cpu_s else ""


def _solo_rate(settings: Settings, calls: int) -> float:
    """litellm's solo call rate with the worker's gc settings (`settle_heap`), as the worker runs."""
    return asyncio.run(settled_call_rate(settings, calls))


def run_bench(settings: Settings, events: int, tasks: int, agent_calls: int = 3_000, agent_tasks: int = 8_000,
              sections: set[str] | None = None, two_workers: bool = True) -> None:
    """The raw baseline, then the chosen sections (pipeline, observability, memory, agents, outcomes, tools;
    default all)."""
    sections = {"pipeline", "observability", "memory", "agents", "outcomes", "tools"} if sections is None else sections
    value_size = len(default_codec().encode("TaskRequested", make_task("benchmark task 0: add a cache")))
    click.echo(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
               f"broker {settings.kafka_servers}; {settings.partitions} partitions")
    raw = asyncio.run(raw_forward_rate(settings, events, value_size))
    click.echo(f"raw aiokafka consume->produce : {raw.rate:>10,.0f} events/s  ({raw.count:,} x {value_size} B)")
    if "pipeline" in sections:
        pipe = pipeline_figures(settings, tasks, agent_calls)
        ratio = pipe.rate / raw.rate if raw.rate else 0.0
        click.echo(f"ratio pipeline / raw          : {ratio:>10.3f}  (each task is 1 record in, 2 out)")
        row = f"| {time.strftime('%Y-%m-%d')} | {os.cpu_count()} | {raw.rate:,.0f} | {pipe.rate:,.0f} | {ratio:.3f} |"
        click.echo(f"\nfor BENCHMARKS.md:\n{row}\n")
    if "observability" in sections:
        from streams.bench.observability import observability_cost  # issue 13: metrics and traces

        click.echo("\nobservability (pipeline end to end, on and off, alternately):")
        observability_cost(settings, tasks)
    if "memory" in sections:
        from streams.bench.memory import memory_bench  # issue 5: memory tiers

        click.echo("\nmemory tiers:")  # sized with --tasks: 3,000 (the default) gives 2,000 records, 200 searches
        memory_bench(settings, records=min(2000, tasks), searches=min(200, max(10, tasks // 4)))
    if "agents" in sections:
        from streams.bench.agents import run_agent_bench  # issue 3: agent swarms

        click.echo("\nagent swarms:")
        run_agent_bench(settings, calls=agent_calls, tasks=agent_tasks, two_workers=two_workers)
    if "outcomes" in sections:
        from streams.bench.outcomes import outcomes_bench  # issue 18: the plan's four outcomes

        click.echo("\nthe plan's four outcomes (each: the same workload with the feature and with its baseline):")
        outcomes_bench(settings)
    if "tools" in sections:
        from streams.bench.tools import tools_bench  # issue 15: tools over MCP

        click.echo("\ntools over MCP:")
        tools_bench(settings)
