"""Chaos runs from outside, as a user would: workers and servers are killed, stopped, added and removed
while tasks are produced; afterwards every task must have been answered, none run twice except after a
crash, nothing charged twice, every sink tier must hold each unique event once, and errors stay rare.

Each run prints a summary table (markdown, for docs/reliability.md) before it asserts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from chaos_kit import Audit, Faults, Fleet, Load, audit, experiment_counts, run_faults, wait_answered, wait_sinks

from agents.prompt_registry import Experiment, PromptRegistry
from schemas import default_codec
from streams.admin import ensure_topics
from streams.devstack import LocalStack
from streams.harness import start_sinks, stop
from streams.settings import Settings

pytestmark = pytest.mark.chaos

codec = default_codec()


def _report(report: Audit) -> None:
    table = report.table()
    print(f"\n{table}\n", flush=True)
    path = os.environ.get("AGENTSTREAM_CHAOS_REPORT")
    if path:
        with Path(path).open("a") as out:
            out.write(f"{table}\n\n")


def _experiment(settings: Settings) -> str:
    """A running prompt experiment that never decides (equal variants, a huge minimum): every task that asks
    for its prompt runs in it, so each of their outputs must be counted once by the scoring processor."""
    run = settings.app_id.rsplit("-", 1)[-1]
    prompt, name = f"chaos-review-{run}", f"chaos-exp-{run}"
    registry = PromptRegistry(settings.postgres_dsn).migrate()
    try:
        for text in ("Review: {{ task }}", "Review, defects first: {{ task }}"):
            registry.add_version(prompt, text, author="chaos", metadata={"simulated_success": "0.5"})
        registry.start_experiment(Experiment(name, prompt, ["v1", "v2"], min_samples=1_000_000, alpha=0.05))
    finally:
        registry.close()
    return name


async def _run(stack: LocalStack, name: str, settings: Settings, *, tasks: int, over_s: float, schedule: list[str],
               every_s: float, first_after_s: float, pattern: str | None = None, experiment: bool = False) -> Audit:
    """Three workers and the sinks; the load and the faults at once; then wait, audit and print."""
    await ensure_topics(settings)
    experiment_name = _experiment(settings) if experiment else None
    fleet = Fleet(settings)
    sinks = start_sinks(settings, f"chaos-{settings.app_id}-sinks.log")
    try:
        for _ in range(3):
            fleet.add()
        load = Load(settings, codec, settings.app_id)
        if experiment_name is not None:
            load.experiment_prompt = experiment_name.replace("chaos-exp-", "chaos-review-")
        await load.produce(1, 0.0, pattern)  # one task first: the workers are up once it is answered
        await wait_answered(settings, codec, set(load.sent), 180)
        faults = Faults(fleet, stack, settings)
        print(f"\n{name}: {tasks} tasks over {over_s:.0f}s, a fault every {every_s:.0f}s", flush=True)
        await asyncio.gather(load.produce(tasks, over_s, pattern),
                             run_faults(faults, schedule, every_s, first_after_s))
        loaded = time.monotonic()
        await faults.recovered()
        fleet.reap()
        while len(fleet.live) < 3:  # every broker up and three workers before the wait
            fleet.add()
        await wait_answered(settings, codec, set(load.sent), 240)
        drain_s = time.monotonic() - loaded
        await asyncio.sleep(5)  # a double that is still on its way
        # Ends sooner once nothing moves for 90 s (a batch of embeddings on a busy machine); then the sinks
        # print where they wait (SIGUSR1), into their log.
        sinks_state = await wait_sinks(settings, codec, 300, on_stall=lambda: os.kill(sinks.pid, signal.SIGUSR1))
        fleet.reap()
        report = await audit(name, settings, codec, load, faults.log, sinks_state, drain_s, len(fleet.exited_alone))
        if experiment_name is not None:
            report.experiment = await experiment_counts(settings, codec, experiment_name)
        return report
    finally:
        await asyncio.to_thread(fleet.stop_all)
        stop(sinks, timeout_s=30.0)


def _settings(stack: LocalStack, **update: object) -> Settings:
    """This run's topics and group. No memory recall in the workers and no prefetch in the sinks (three
    embeddings per task on two shared cores): the sinks still write every tier, which is what is checked."""
    return stack.settings.isolated(f"chaos-{uuid.uuid4().hex[:6]}", memory_context_k=0, **update)


MIXED = ["sigkill-worker", "add-worker", "kill-leader-broker", "sigterm-worker", "remove-worker", "stop-stores",
         "sigkill-worker", "sigterm-worker", "kill-leader-broker", "add-worker", "remove-worker", "stop-stores"]


async def test_every_task_answered_once_through_scaling_crashes_and_failover(chaos_stack: LocalStack) -> None:
    """2,000 tasks at 200-500 ms per model call over 60 s; one fault every 4 s, each kind twice."""
    settings = _settings(chaos_stack, simulator_latency_ms=350.0, simulator_jitter_ms=150.0)
    report = await _run(chaos_stack, "2,000 tasks, 200-500 ms calls, mixed faults", settings, tasks=2000,
                        over_s=60.0, schedule=MIXED, every_s=4.0, first_after_s=4.0, experiment=True)
    _report(report)
    assert not report.failures(), report.failures()


# The SIGTERM last: a worker with hundreds of 10 s calls in flight may take up to the 60 s stop timeout.
SLOW = ["sigkill-worker", "kill-leader-broker", "sigkill-worker", "sigterm-worker"]


async def test_ten_second_calls_with_hundreds_in_flight_at_each_kill(chaos_stack: LocalStack) -> None:
    """10 s model calls, up to 250 tasks in flight per worker; each fault meets hundreds in flight."""
    settings = _settings(chaos_stack, simulator_latency_ms=10_000.0, simulator_jitter_ms=0.0,
                         worker_concurrency=250)
    report = await _run(chaos_stack, "1,000 tasks, 10 s calls, hundreds in flight", settings, tasks=1000,
                        over_s=30.0, schedule=SLOW, every_s=8.0, first_after_s=12.0, pattern="fast")
    _report(report)
    assert not report.failures(), report.failures()
