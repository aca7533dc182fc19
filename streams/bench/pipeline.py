"""`agentstream bench`: the pipeline measured against raw aiokafka in the same run, on the same broker.

The raw baseline forwards bytes consume -> produce with batched aiokafka (`getmany`), the ceiling for
any Kafka processor in Python here. The pipeline figure is tasks/s end to end (submit -> TaskResult
read back) through one worker, with the simulator answering instantly, so it measures our overhead.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
import uuid
from dataclasses import dataclass

import click

from schemas import default_codec
from streams import kafka
from streams.admin import delete_topics, ensure_topics
from streams.bench.load import bench_workers, drive
from streams.client import make_task
from streams.settings import Settings
from streams.topics import TopicSpec

__all__ = ["Measurement", "pipeline_rate", "raw_forward_rate", "run_bench"]


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


def pipeline_rate(settings: Settings, count: int) -> Measurement:
    """Tasks/s end to end through one worker on topics of this run's own."""
    tasks = [make_task(f"benchmark task {n}: add a cache in front of the user lookup") for n in range(count)]
    with bench_workers(settings, 1, simulator_latency_ms=0.0) as bench:
        load = asyncio.run(drive(bench, tasks, warm_up_timeout_s=120))
    return Measurement(len(load.results), load.seconds)


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
        pipe = pipeline_rate(settings, tasks)
        click.echo(f"pipeline end to end           : {pipe.rate:>10,.0f} tasks/s   ({pipe.count:,}/{tasks:,} tasks, "
                   f"1 worker, concurrency {settings.worker_concurrency}, instant simulator)")
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
