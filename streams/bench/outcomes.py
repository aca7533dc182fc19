"""`agentstream bench --only outcomes`: the plan's four promised outcomes, each measured as a ratio of two
runs of one workload in this process: once with the feature, once with its baseline.

The workload is what traffic looks like: a mix of patterns, capabilities and optimizations, tasks that
repeat (the same question asked again) and related ones (a variant of an earlier question), the simulated
model answering after a latency with jitter where the outcome depends on it. The runner is the worker's
(agents/ through litellm); memory is the real tiers of the running local stack (Redis L1, pgvector L2,
PostgreSQL L3), seeded with history.

1. coordination: the whole workload with its tasks and the quality pattern's candidates in parallel,
   against everything one call after another: the wall-time ratio (target 10x).
2. caching: memory queries that reach L2/L3 with the L1 cache and the prefetch, against the same workload
   with both off: the reduction (target 75%).
3. routing: the workload's cost with each task's own optimization against always the best-quality capable
   model, and both runs' quality as the judge (the one the quality pattern and replay use) grades it
   (target 50% cheaper).
4. predictive context: a task reaching the worker to its first model call, with the prefetch against
   without: the reduction at p50 and p95 (target 60%).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import click

from agents.factory import build_runner
from agents.judging import Candidate
from agents.observer import RunObserver
from agents.runner import TaskRunner
from agents.simulator import install_simulator
from schemas.events import Record
from sinks.base import MemoryRecord
from sinks.retrieval import Retriever, SearchResult
from streams.memory.tiers import MemoryRecall, build_tiers
from streams.replay.run import make_judge
from streams.settings import Settings
from streams.worker import runner_config

__all__ = ["Outcome", "outcomes_bench", "workload"]

_SUBJECTS = ("the payments retry loop", "the session cache", "the search index rebuild", "the CSV importer",
             "the rate limiter", "the billing report", "the login audit log", "the image resizer",
             "the webhook dispatcher", "the nightly backup", "the feature-flag service", "the email queue")
_ASKS = ("Add tests for {}", "Find why {} is slow", "Document {}", "Refactor {} for readability",
         "Plan a migration of {} to the new database", "Review the last change to {}")
_CAPABILITIES = ("coding", "documentation", "research", "planning", "testing", "review")


@dataclass(frozen=True)
class Outcome:
    """One promise of the plan: its target, the two runs' figures and the ratio between them."""

    name: str
    target: str
    measured: str
    met: bool
    feature: float  # the run with the feature (seconds, queries, dollars, ms)
    baseline: float  # the run without it
    figure: float  # what the target is about: baseline/feature for speed, 1 - feature/baseline for reductions

    def line(self) -> str:
        return f"{self.name:<19}: {self.measured}  (target {self.target}: {'met' if self.met else 'NOT met'})"


def workload(count: int, seed: int = 7, repeat_share: float = 0.35, related_share: float = 0.25) -> list[Record]:
    """`count` tasks: new questions, exact repeats of earlier ones (the same fields) and related ones (an
    earlier subject, another ask); patterns, optimizations and capabilities drawn from a realistic mix."""
    rng = random.Random(seed)
    tasks: list[Record] = []
    for n in range(count):
        roll = rng.random()
        if tasks and roll < repeat_share:
            tasks.append({**rng.choice(tasks), "task_id": f"outcome-{seed}-{n}"})
            continue
        if tasks and roll < repeat_share + related_share:
            subject = rng.choice(tasks)["subject"]
        else:
            subject = rng.randrange(len(_SUBJECTS))
        pattern = rng.choices(("fast", "balanced", "quality"), (5, 3, 2))[0]
        optimization = rng.choices(("balanced", "cost", "speed", "quality"), (4, 3, 1.5, 1.5))[0]
        description = f"{rng.choice(_ASKS).format(_SUBJECTS[subject])} (ticket {seed}-{n})"
        tasks.append({"task_id": f"outcome-{seed}-{n}", "description": description, "pattern": pattern,
                      "optimization": optimization, "capability": rng.choice(_CAPABILITIES), "tenant": "bench",
                      "created_at": 0, "subject": subject})
    return [{k: v for k, v in t.items() if k != "subject"} for t in tasks]


def _history(run: str) -> list[MemoryRecord]:
    """What the tiers remember before the workload: one earlier result per subject and ask."""
    out = []
    for n, (ask, subject) in enumerate((a, s) for a in range(len(_ASKS)) for s in range(len(_SUBJECTS))):
        text = f"Earlier: {_ASKS[ask].format(_SUBJECTS[subject])}. Done by changing {_SUBJECTS[subject]} step by step."
        record = {"task_id": f"history-{run}-{n}", "status": "ok", "output": text, "model": "simulator/fast-1",
                  "cost_usd": 0.0, "latency_ms": 1.0, "steps": 1, "tokens_in": 1, "tokens_out": 1, "tenant": "bench",
                  "error": None, "metadata": {}, "created_at": 1_764_000_000_000}
        out.append(MemoryRecord("TaskResult", record, "history", 0, n, 1_764_000_000_000, None, text.encode()))
    return out


class _CountingRetriever(Retriever):
    """A Retriever that counts its searches by the tier that answered (L1 or L2/L3)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answered: Counter[str] = Counter()

    def search(self, query: str, k: int = 3, filters: dict[str, Any] | None = None) -> SearchResult:
        result = super().search(query, k, filters)
        self.answered["l1" if result.tier == "l1" else "l2/l3"] += 1
        return result


class _FirstCall(RunObserver):
    """Notes when a task's first model call starts (tasks run one at a time while it is read)."""

    def __init__(self) -> None:
        super().__init__()
        self.first: float | None = None

    def calls_in_flight(self, delta: int) -> None:
        if delta > 0 and self.first is None:
            self.first = time.perf_counter()


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def _timed(calls: list[Callable[[], Awaitable[Any]]], parallel: int) -> float:
    """Wall time of `calls`, at most `parallel` at once."""
    gate = asyncio.Semaphore(parallel)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await call()
    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in calls))
    return time.perf_counter() - started


async def coordination(settings: Settings, tasks: list[Record]) -> Outcome:
    config = runner_config(settings)
    parallel = build_runner(config)
    serial = build_runner(dataclasses.replace(config, sequential_candidates=True))
    warm = [{**t, "task_id": f"warm-{t['task_id']}"} for t in tasks[:8]]  # imports, clients, litellm's tables
    await _timed([lambda t=t: parallel.run(t) for t in warm], settings.worker_concurrency)
    await _timed([lambda t=t: serial.run(t) for t in warm], 1)
    together = await _timed([lambda t=t: parallel.run(t) for t in tasks], settings.worker_concurrency)
    one_by_one = await _timed([lambda t=t: serial.run(t) for t in tasks], 1)
    ratio = one_by_one / together
    return Outcome("coordination", "10x", f"{ratio:.1f}x faster ({one_by_one:.1f} s one call after another, "
                   f"{together:.1f} s in parallel: {settings.worker_concurrency} tasks, candidates at once)",
                   ratio >= 10, together, one_by_one, ratio)


async def _memory_run(settings: Settings, tasks: list[Record], retriever: _CountingRetriever,
                      prefetch: bool) -> list[float]:
    """Each task as the worker runs it, one at a time (the prefetcher, when on, searched when it was queued);
    the ms from the task reaching the worker to its first model call."""
    observer = _FirstCall()
    runner = build_runner(runner_config(settings), memory=MemoryRecall(retriever, settings.memory_context_k),
                          observer=observer)
    waits = []
    for task in tasks:
        if prefetch:
            await asyncio.to_thread(retriever.recall, task, settings.memory_context_k)
        observer.first = None
        reached = time.perf_counter()
        await runner.run(task)
        waits.append(((observer.first or reached) - reached) * 1000)
    return waits


async def memory_outcomes(settings: Settings, tasks: list[Record]) -> tuple[Outcome, Outcome]:
    """Caching and predictive context, from three runs over fresh tiers: no L1 and no prefetch, L1 and
    prefetch, L1 without prefetch."""
    tiers = build_tiers(settings, {"vectors", "postgres"})
    history = _history(settings.app_id)
    for tier in tiers.values():
        tier.setup()
        tier.write(history)
    caches = []

    def retriever(with_l1: bool) -> _CountingRetriever:
        l1 = None
        if with_l1:  # a cold cache of its own for each run
            l1 = build_tiers(settings.isolated(f"l1-{len(caches)}"), {"redis"})["redis"]
            caches.append(l1)
        return _CountingRetriever(l1, tiers["vectors"], tiers["postgres"],  # type: ignore[arg-type]
                                  min_score=settings.memory_min_score, cache_ttl_s=settings.memory_cache_ttl_s)
    try:
        off = retriever(False)
        waits_off = await _memory_run(settings, tasks, off, prefetch=False)
        on = retriever(True)
        waits_on = await _memory_run(settings, tasks, on, prefetch=True)
        no_prefetch = retriever(True)
        waits_cold = await _memory_run(settings, tasks, no_prefetch, prefetch=False)
    finally:
        for tier in [*tiers.values(), *caches]:
            tier.close()
    reached_off, reached_on = off.answered["l2/l3"], on.answered["l2/l3"]
    reduction = 1 - reached_on / reached_off if reached_off else 0.0
    caching = Outcome("caching", "75% fewer L2/L3 queries",
                      f"{reduction:.0%} fewer ({reached_on} of {sum(on.answered.values())} searches reach L2/L3 "
                      f"with L1 and prefetch, {reached_off} of {sum(off.answered.values())} without)",
                      reduction >= 0.75, reached_on, reached_off, reduction)
    p50 = 1 - _pct(waits_on, 50) / _pct(waits_cold, 50)
    p95 = 1 - _pct(waits_on, 95) / _pct(waits_cold, 95)
    context = Outcome("predictive context", "60% less latency",
                      f"{p50:.0%} less at p50, {p95:.0%} at p95 (to the first model call: p50 "
                      f"{_pct(waits_on, 50):.2f} ms with prefetch, {_pct(waits_cold, 50):.2f} ms without; "
                      f"p95 {_pct(waits_on, 95):.2f} / {_pct(waits_cold, 95):.2f} ms; with neither L1 nor "
                      f"prefetch: p50 {_pct(waits_off, 50):.2f} ms)", min(p50, p95) >= 0.60,
                      _pct(waits_on, 50), _pct(waits_cold, 50), p50)
    return caching, context


async def _run_all(runner: TaskRunner, tasks: list[Record], parallel: int) -> list[Record]:
    results: list[Record] = []

    async def one(task: Record) -> None:
        results.append((await runner.run(task)).result)
    await _timed([lambda t=t: one(t) for t in tasks], parallel)
    return results


async def routing(settings: Settings, tasks: list[Record]) -> Outcome:
    runner = build_runner(runner_config(settings))
    own = await _run_all(runner, tasks, settings.worker_concurrency)
    best = await _run_all(runner, [{**t, "optimization": "quality"} for t in tasks], settings.worker_concurrency)
    judge = make_judge(settings)
    by_id = {t["task_id"]: t for t in tasks}

    async def quality(results: list[Record]) -> float:
        scores = [(await judge.judge(by_id[r["task_id"]], [Candidate(r["task_id"], r["output"])])).verdicts[0].score
                  for r in results if r["status"] == "ok"]
        return statistics.fmean(scores) if scores else 0.0
    cost_own, cost_best = sum(r["cost_usd"] for r in own), sum(r["cost_usd"] for r in best)
    saving = 1 - cost_own / cost_best if cost_best else 0.0
    q_own, q_best = await quality(own), await quality(best)
    return Outcome("routing", "50% cheaper", f"{saving:.0%} cheaper (${cost_own:.4f} with each task's own "
                   f"optimization, ${cost_best:.4f} always the best model); judged quality {q_own:.2f} against "
                   f"{q_best:.2f} of 1", saving >= 0.5, cost_own, cost_best, saving)


def outcomes_bench(settings: Settings, tasks: int = 120, latency_ms: float = 500.0, jitter_ms: float = 200.0,
                   coordination_tasks: int = 32) -> list[Outcome]:
    """Print the four outcome lines (and return them), each from two runs of the same workload.

    Coordination runs the first `coordination_tasks` tasks with the model answering after `latency_ms`
    (a real model's order of magnitude: parallelism is about waiting on models); the other three do not
    depend on the model's latency (queries counted, time to the first call, dollars), so the model
    answers at once there and they take the whole workload."""
    scoped = settings.isolated(f"bench-outcomes-{uuid.uuid4().hex[:6]}")
    work = workload(tasks)
    kinds = Counter(t["pattern"] for t in work)
    repeats = len(work) - len({t["description"] for t in work})
    click.echo(f"workload: {len(work)} tasks ({', '.join(f'{n} {p}' for p, n in sorted(kinds.items()))}; "
               f"{repeats} repeat an earlier question); coordination on the first {coordination_tasks} with the "
               f"model answering in {latency_ms:g} ms +- {jitter_ms:g}")
    install_simulator(latency_ms, jitter_ms)
    found = [asyncio.run(coordination(scoped, work[:coordination_tasks]))]
    install_simulator(0.0, 0.0)
    found += [*asyncio.run(memory_outcomes(scoped, work)), asyncio.run(routing(scoped, work))]
    for outcome in found:
        click.echo(outcome.line())
    return found
