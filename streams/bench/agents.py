"""`agentstream bench`, the agent half: litellm's own call rate, one worker's tasks/s and calls in
flight at 2 s model latency, the latency the pipeline adds on top of the model's, and two workers.

(a) is measured in this process through the very call path the worker uses (TaskRunner ->
StepCaller -> ModelRouter -> litellm.acompletion -> the simulator provider), with the simulator answering
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import click

from agents.factory import build_runner
from agents.simulator import install_simulator
from schemas import default_codec
from streams.bench.load import LoadRun, bench_workers, drive
from streams.client import make_task, read_topic
from streams.settings import Settings
from streams.topics import OUTPUTS
from streams.worker import runner_config, settle_heap

__all__ = ["LoadFigures", "litellm_call_rate", "run_agent_bench", "settled_call_rate", "worker_load"]


async def litellm_call_rate(settings: Settings, calls: int, in_flight: int = 200) -> tuple[float, float]:
    """Fast tasks/s (one model call each) in process, simulator instant, `in_flight` at a time:
    with Python's default garbage collector settings, then with the worker's (`settle_heap`).
    Raises if a call does not end `ok` (e.g. a model table whose models cannot answer)."""
    rate = await _call_meter(settings, in_flight, warm_up=min(200, calls))
    default = await rate(calls)
    settle_heap()
    return default, await rate(calls)


async def settled_call_rate(settings: Settings, calls: int, in_flight: int = 200) -> float:
    """`litellm_call_rate` with the worker's garbage collector settings only: the pipeline's reference."""
    rate = await _call_meter(settings, in_flight, warm_up=min(200, calls))
    settle_heap()
    return await rate(calls)


async def _call_meter(settings: Settings, in_flight: int, warm_up: int) -> Callable[[int], Awaitable[float]]:
    """A runner on the worker's call path, warmed up by `warm_up` calls, and the function that times `calls` through it.

    A rate's clock stops when litellm has also run its success logging for every call: litellm queues that
    work to a background worker, which a burst starves (2,100 of 3,000 calls' logging still queued when the
    last answer came, measured), and a worker that runs all day pays for it as it goes."""
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    install_simulator(0.0, 0.0)
    runner = build_runner(runner_config(settings))
    gate = asyncio.Semaphore(in_flight)

    async def one(n: int) -> None:
        async with gate:
            run = await runner.run({"task_id": f"bench-{n}", "description": f"bench call {n}: add a cache",
                                    "created_at": 0, "tenant": f"bench-{n % 64}"})
        if run.result["status"] != "ok":  # a rate of failing calls measures nothing
            raise RuntimeError(f"bench call {n} ended {run.result['status']}: {run.result['error']}")

    async def rate(calls: int) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(calls)))
        await GLOBAL_LOGGING_WORKER.flush()
        return calls / (time.perf_counter() - started)

    await asyncio.gather(*(one(n) for n in range(warm_up)))  # imports, clients
    await GLOBAL_LOGGING_WORKER.flush()
    return rate


@dataclass(frozen=True)
class LoadFigures:
    tasks: int
    results: int
    rate: float
    peak_in_flight: int
    overhead_p50_ms: float
    overhead_p95_ms: float


async def _peak_in_flight(settings: Settings) -> int:
    """The most model calls a worker had in flight, as recorded on its AgentOutputs."""
    peak = 0
    async for r in read_topic(settings, default_codec(), settings.topic(OUTPUTS), from_beginning=True,
                              idle_timeout_s=2.0):
        if r.record is not None:
            peak = max(peak, int(r.record["metadata"].get("in_flight", "0")))
    return peak


def _overhead(load: LoadRun, warm_up_s: float) -> list[float]:
    """Per task: (result seen by the client - task created) - the model's own time on it, sorted. Tasks
    of the first `warm_up_s` are not counted (cold paths: first sends per partition, first changelogs)."""
    counted_from = min(load.created_ms.values(), default=0.0) + warm_up_s * 1000
    return sorted(load.received_ms[t] - load.created_ms[t] - r["latency_ms"] for t, r in load.results.items()
                  if t in load.received_ms and load.created_ms[t] >= counted_from)


def worker_load(settings: Settings, workers: int, count: int, latency_ms: float, concurrency: int,
                pace_per_s: float | None = None, warm_up_s: float = 0.0) -> LoadFigures:
    """Tasks/s through `workers` workers in one consumer group, on topics of this run's own."""
    tasks = [make_task(f"benchmark task {n}: add a cache in front of the user lookup", tenant=f"bench-{n % 64}",
                       pattern="fast") for n in range(count)]
    with bench_workers(settings, workers, simulator_latency_ms=latency_ms, simulator_jitter_ms=0.0,
                       worker_concurrency=concurrency, log_level="warning", memory_context_k=0,
                       prompts_enabled=False) as workers:
        load = asyncio.run(drive(workers, tasks, pace_per_s=pace_per_s))
        peak = asyncio.run(_peak_in_flight(workers.settings))
    overhead = _overhead(load, warm_up_s)
    p50 = statistics.median(overhead) if overhead else 0.0
    p95 = overhead[int(0.95 * (len(overhead) - 1))] if overhead else 0.0
    return LoadFigures(count, len(load.results), load.rate, peak, p50, p95)


def run_agent_bench(settings: Settings, calls: int, tasks: int, latency_ms: float = 2000.0,
                    concurrency: int = 1200, two_workers: bool = True) -> None:
    rate_a, settled_a = asyncio.run(litellm_call_rate(settings, calls))
    click.echo(f"(a) litellm call path in process    : {rate_a:>8,.0f} calls/s  ({calls:,} fast tasks, instant "
               f"simulator, runner -> litellm.acompletion, litellm as it runs; (a') {settled_a:,.0f}/s with the "
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
