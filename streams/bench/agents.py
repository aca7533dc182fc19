"""`agentstream bench`, the agent half: litellm's own call rate, one worker's tasks/s and calls in
flight at 2 s model latency, the latency the pipeline adds on top of the model's, and two workers.

(a) is measured in this process through the very call path the worker uses (TaskRunner ->
StepCaller -> ModelRouter -> litellm.Router -> the simulator provider), with the simulator answering
at once, many calls at a time: the ceiling for one worker's event loop. It is measured twice: as
litellm runs (Python's default garbage collector settings), then as (a') with the worker's own
(`settle_heap`), the stricter reference, since the worker runs with them. (b)-(d) run real workers with the same
runner as (a): memory recall and the prompt registry off (their costs are measured in their own
sections), tasks keyed by tenant as `submit` does.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass

import click
from aiokafka import AIOKafkaProducer

from agents.clock import now_ms
from agents.factory import build_runner
from agents.simulator import install_simulator
from schemas import default_codec
from streams.admin import delete_topics, ensure_topics
from streams.client import ResultWatcher, make_task, read_topic, task_key
from streams.demo.run import start_worker, stop_worker
from streams.settings import Settings
from streams.topics import OUTPUTS, TASKS, table_specs, topic_specs
from streams.worker import runner_config, settle_heap

__all__ = ["LoadFigures", "litellm_call_rate", "run_agent_bench", "worker_load"]


async def litellm_call_rate(settings: Settings, calls: int, in_flight: int = 200) -> tuple[float, float]:
    """Fast tasks/s (one model call each) in process, simulator instant, `in_flight` at a time:
    with Python's default garbage collector settings, then with the worker's (`settle_heap`)."""
    install_simulator(0.0, 0.0)
    runner = build_runner(runner_config(settings))
    gate = asyncio.Semaphore(in_flight)

    async def one(n: int) -> None:
        async with gate:
            await runner.run({"task_id": f"bench-{n}", "description": f"bench call {n}: add a cache",
                              "created_at": 0, "tenant": f"bench-{n % 64}"})

    async def rate() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(calls)))
        return calls / (time.perf_counter() - started)
    await asyncio.gather(*(one(n) for n in range(min(200, calls))))  # warm-up: imports, clients
    default = await rate()
    settle_heap()
    return default, await rate()


@dataclass(frozen=True)
class LoadFigures:
    tasks: int
    results: int
    rate: float
    peak_in_flight: int
    overhead_p50_ms: float
    overhead_p95_ms: float


async def _load(settings: Settings, count: int, pace_per_s: float | None, timeout_s: float,
                warm_up_s: float) -> LoadFigures:
    codec = default_codec()
    watcher = ResultWatcher(settings, codec)
    await watcher.start()
    received: dict[str, float] = {}
    try:
        warm = make_task("warm-up: the worker has joined its group when this comes back")
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_servers, linger_ms=1)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic(TASKS), codec.encode("TaskRequested", warm),
                                         key=task_key(warm))
            if not await watcher.wait([warm["task_id"]], 180):
                raise click.ClickException("a bench worker gave no result in 180 s; see its log in the data folder")
            tasks = [make_task(f"benchmark task {n}: add a cache in front of the user lookup",
                               tenant=f"bench-{n % 64}", pattern="fast") for n in range(count)]
            ids = [t["task_id"] for t in tasks]
            created: dict[str, float] = {}
            # Read results while submitting, so a result's arrival time is when it really arrived.
            waiting = asyncio.create_task(watcher.wait(ids, timeout_s, on_result=lambda r: received.setdefault(
                r["task_id"], time.time() * 1000)))
            started = time.perf_counter()
            batch = max(1, int(pace_per_s / 100)) if pace_per_s else count  # paced: a batch every 10 ms
            for first in range(0, count, batch):
                for task in tasks[first:first + batch]:
                    task["created_at"] = now_ms()
                    created[task["task_id"]] = task["created_at"]
                    await producer.send(settings.topic(TASKS), codec.encode("TaskRequested", task),
                                        key=task_key(task))
                if pace_per_s:
                    await asyncio.sleep(max(0.0, started + (first + batch) / pace_per_s - time.perf_counter()))
            await producer.flush()
        finally:
            await producer.stop()
        results = await waiting
        elapsed = time.perf_counter() - started
    finally:
        await watcher.stop()
    peak = 0
    async for r in read_topic(settings, codec, settings.topic(OUTPUTS), from_beginning=True, idle_timeout_s=2.0):
        if r.record is not None:
            peak = max(peak, int(r.record["metadata"].get("in_flight", "0")))
    # overhead = (result seen by the client - task created) - the model's own time on the task; tasks
    # of the first `warm_up_s` are not counted (cold paths: first sends per partition, first changelogs)
    counted_from = min(created.values(), default=0.0) + warm_up_s * 1000
    overhead = sorted(received[t] - created[t] - r["latency_ms"] for t, r in results.items()
                      if t in received and created[t] >= counted_from)
    p50 = statistics.median(overhead) if overhead else 0.0
    p95 = overhead[int(0.95 * (len(overhead) - 1))] if overhead else 0.0
    return LoadFigures(count, len(results), len(results) / elapsed if elapsed else 0.0, peak, p50, p95)


def worker_load(settings: Settings, workers: int, count: int, latency_ms: float, concurrency: int,
                pace_per_s: float | None = None, warm_up_s: float = 0.0) -> LoadFigures:
    """Tasks/s through `workers` workers in one consumer group, on topics of this run's own."""
    run = uuid.uuid4().hex[:8]
    bench = settings.model_copy(update={
        "topic_prefix": f"bench-{run}.", "app_id": f"agentstream-bench-{run}", "simulator_latency_ms": latency_ms,
        "simulator_jitter_ms": 0.0, "worker_concurrency": concurrency, "log_level": "warning",
        "memory_context_k": 0, "prompts_enabled": False})
    asyncio.run(ensure_topics(bench))
    procs = [start_worker(bench, f"bench-worker-{run}-{n}.log") for n in range(workers)]
    try:
        return asyncio.run(_load(bench, count, pace_per_s, timeout_s=600, warm_up_s=warm_up_s))
    finally:
        for proc in procs:
            stop_worker(proc)
        asyncio.run(delete_topics(bench, [s.name for s in topic_specs(bench) + table_specs(bench)]))


def run_agent_bench(settings: Settings, calls: int, tasks: int, latency_ms: float = 2000.0,
                    concurrency: int = 1200, two_workers: bool = True) -> None:
    rate_a, settled_a = asyncio.run(litellm_call_rate(settings, calls))
    click.echo(f"(a) litellm call path in process    : {rate_a:>8,.0f} calls/s  ({calls:,} fast tasks, instant "
               f"simulator, runner -> litellm.Router, litellm as it runs; (a') {settled_a:,.0f}/s with the "
               f"worker's gc settings)")
    one = worker_load(settings, 1, tasks, latency_ms, concurrency)
    click.echo(f"(b) 1 worker, fast, {latency_ms / 1000:g} s model latency : {one.rate:>8,.1f} tasks/s  "
               f"({one.results:,}/{one.tasks:,}; peak {one.peak_in_flight} calls in flight; "
               f"{one.rate / rate_a:.0%} of (a), {one.rate / settled_a:.0%} of (a'))")
    paced_rate = max(1.0, one.rate * 0.5)
    warm_up_s = 3.0
    paced = worker_load(settings, 1, max(20, int(paced_rate * (warm_up_s + 10))), latency_ms, concurrency,
                        pace_per_s=paced_rate, warm_up_s=warm_up_s)
    click.echo(f"(c) pipeline overhead at {paced_rate:,.0f} tasks/s  : p50 {paced.overhead_p50_ms:,.0f} ms, "
               f"p95 {paced.overhead_p95_ms:,.0f} ms on top of the model's {latency_ms:,.0f} ms "
               f"(load at half of (b), first {warm_up_s:g} s not counted; under saturation (b) p95 "
               f"{one.overhead_p95_ms:,.0f} ms incl. queueing)")
    if not two_workers:
        return
    two = worker_load(settings, 2, tasks * 2, latency_ms, concurrency)
    click.echo(f"(d) 2 workers, one consumer group   : {two.rate:>8,.1f} tasks/s  ({two.results:,}/{two.tasks:,}; "
               f"{two.rate / (2 * one.rate):.0%} of twice one worker)")
