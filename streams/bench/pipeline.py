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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import default_codec
from streams.admin import delete_topics, ensure_topics
from streams.client import ResultWatcher, make_task, submit_tasks
from streams.demo.run import start_worker, stop_worker
from streams.settings import Settings
from streams.topics import TopicSpec, topic_specs

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
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_servers, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        value = os.urandom(value_size)
        for n in range(events):  # prefill, not timed
            await producer.send(src, value, key=str(n).encode())
        await producer.flush()
        consumer = AIOKafkaConsumer(src, bootstrap_servers=settings.kafka_servers, group_id=f"bench-{run}",
                                    auto_offset_reset="earliest", enable_auto_commit=False,
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


async def _timed_tasks(settings: Settings, count: int) -> Measurement:
    codec = default_codec()
    watcher = ResultWatcher(settings, codec)
    await watcher.start()
    try:
        warm = make_task("warm-up: the worker has joined its group when this comes back")
        await submit_tasks(settings, codec, [warm])
        if not await watcher.wait([warm["task_id"]], 120):
            raise click.ClickException("the bench worker gave no result in 120 s; see its log in the data folder")
        tasks = [make_task(f"benchmark task {n}: add a cache in front of the user lookup") for n in range(count)]
        started = time.perf_counter()
        ids = await submit_tasks(settings, codec, tasks)
        results = await watcher.wait(ids, timeout_s=600)
        return Measurement(len(results), time.perf_counter() - started)
    finally:
        await watcher.stop()


def pipeline_rate(settings: Settings, count: int) -> Measurement:
    """Tasks/s end to end through one worker on topics of this run's own."""
    run = uuid.uuid4().hex[:8]
    bench = settings.model_copy(update={"topic_prefix": f"bench-{run}.", "app_id": f"agentstream-bench-{run}",
                                        "simulator_latency_ms": 0.0})
    asyncio.run(ensure_topics(bench))
    worker = start_worker(bench, "bench-worker.log")
    try:
        return asyncio.run(_timed_tasks(bench, count))
    finally:
        stop_worker(worker)
        asyncio.run(delete_topics(bench, [s.name for s in topic_specs(bench)]))


def run_bench(settings: Settings, events: int, tasks: int, agent_calls: int = 3_000, agent_tasks: int = 8_000,
              sections: set[str] | None = None, two_workers: bool = True) -> None:
    """The raw baseline, then the chosen sections (pipeline, memory, agents; default all)."""
    sections = {"pipeline", "memory", "agents"} if sections is None else sections
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
    if "memory" in sections:
        from streams.bench.memory import memory_bench  # issue 5: memory tiers

        click.echo("\nmemory tiers:")  # sized with --tasks: 3,000 (the default) gives 2,000 records, 200 searches
        memory_bench(settings, records=min(2000, tasks), searches=min(200, max(10, tasks // 4)))
    if "agents" in sections:
        from streams.bench.agents import run_agent_bench  # issue 3: agent swarms

        click.echo("\nagent swarms:")
        run_agent_bench(settings, calls=agent_calls, tasks=agent_tasks, two_workers=two_workers)
