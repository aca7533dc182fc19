"""Run a worker until SIGTERM/SIGINT: the task stage and the ordered processors (prompt judge, prompt
scoring, code changes), each its own consumer group, on one event loop.

No Faust: its consumer commits past records its actors never finished or never received across a
rebalance (docs/delivery.md), so every stage runs on an aiokafka group that commits only what it
handled. One signal stops them all: each finishes or gives back what it holds, commits and leaves
its group; then the process exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import click
import litellm
import psycopg

from agents.factory import RunnerConfig, build_runner
from agents.prompt_chooser import PromptChooser
from agents.prompt_registry import PromptRegistry
from agents.prompt_templates import RenderLimits
from agents.runner import TaskRunner
from agents.simulator import install_simulator
from schemas import Codec, default_codec
from streams import kafka
from streams.admin import ensure_topics
from streams.lifecycle import Loop, close, run_all, run_until_signalled, started
from streams.logs import get_logger
from streams.observability import runtime as observability
from streams.observability.telemetry import telemetry
from streams.processors.code_changes import code_change_processor
from streams.processors.guard import Guard, Send, topic_sender
from streams.processors.scoring import prompt_processors
from streams.processors.tasks import TaskStage
from streams.risk.service import worker_loops
from streams.settings import Settings
from streams.tools.worker import serving_tools, worker_tools
from streams.topics import DEADLETTERS

__all__ = ["run_worker", "runner_config", "serve_worker", "settle_heap"]

log = get_logger(__name__)


def runner_config(settings: Settings) -> RunnerConfig:
    """The agents side's config, taken from the settings (agents/ never reads the environment)."""
    return RunnerConfig(
        models_file=settings.models_file, agents_file=settings.agents_file, timeout_s=settings.llm_timeout_s,
        num_retries=settings.llm_num_retries, retry_backoff_s=settings.llm_retry_backoff_s,
        tenant_daily_budget_usd=settings.tenant_daily_budget_usd, degrade_share=settings.budget_degrade_share,
        quality_candidates=settings.quality_candidates, max_in_flight=settings.llm_max_in_flight,
        pinned_model=settings.model,
    )


def settle_heap() -> None:
    """Tune the garbage collector for a process that keeps ~400k long-lived objects (litellm's tables
    above all) and allocates heavily per call: move what is loaded at start out of the collector's
    view (its full collections took ~190 ms each) and collect the young generation less often.
    Measured in `agentstream bench`, (a) with and without. Called once the process has warmed up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _prompts(settings: Settings) -> PromptChooser | None:
    """The prompt registry view the runner chooses prompts from; None when disabled.

    A worker started while PostgreSQL restarts waits for it (up to the start-up timeout) rather than
    exiting: a rolling deploy and a database restart may well overlap."""
    if not settings.prompts_enabled:
        return None
    deadline = time.monotonic() + settings.startup_timeout_s
    while True:
        try:
            registry = PromptRegistry(settings.postgres_dsn).migrate()
            break
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise click.ClickException(f"PostgreSQL did not answer for {settings.startup_timeout_s:.0f} s "
                                           f"({exc}); start it with `agentstream up`, or set DATABASE_URL") from exc
            log.warning("waiting for PostgreSQL", stage="worker", error=str(exc)[:200])
            time.sleep(1.0)
    return PromptChooser(registry, ttl_s=settings.prompt_cache_ttl_s, limits=RenderLimits(
        settings.prompt_max_chars, settings.prompt_render_timeout_s))


def run_worker(settings: Settings) -> None:
    """Create the topics, then consume until stopped. Blocks."""
    asyncio.run(ensure_topics(settings, timeout_s=settings.startup_timeout_s, wait_for_kafka=True))  # up front
    install_simulator(settings.simulator_latency_ms, settings.simulator_jitter_ms)
    # litellm loads much of itself lazily on its first calls; pay that once here, not on the first tasks.
    # The simulator answers it (never a billed model), synchronously, outside any event loop.
    litellm.completion(model="simulator/fast-1", messages=[{"role": "user", "content": "warm-up"}])
    observability.start(settings, "worker")  # /metrics, traces, lag (AGENTSTREAM_OBSERVABILITY=false: none)
    runner = build_runner(runner_config(settings), memory=_memory(settings), prompts=_prompts(settings),
                          observer=telemetry.run_observer(), tools=worker_tools(settings))
    settle_heap()
    log.info("worker starting", stage="worker", app_id=settings.app_id, kafka=settings.kafka_servers,
             concurrency=settings.worker_concurrency)
    run_until_signalled(lambda stop: serve_worker(settings, runner, default_codec(), stop))
    log.info("worker stopped", stage="worker")


async def serve_worker(settings: Settings, runner: TaskRunner, codec: Codec, stop: asyncio.Event) -> None:
    """The task stage and the ordered processors until `stop` is set (or one of them fails)."""
    producer = await started(lambda: kafka.producer(settings), settings.startup_timeout_s, "producer")

    def send(topic: str) -> Send:
        return topic_sender(producer, settings.topic(topic))

    guard = Guard(codec, send(DEADLETTERS))
    processors = [code_change_processor(settings, guard, send)]
    if runner.prompts is not None:  # prompt experiments (issue 4)
        processors += prompt_processors(settings, codec, guard, send, runner.prompts.invalidate)
    loops: list[Loop] = [TaskStage(settings, runner, codec).run, *(p.run for p in processors),
                         *worker_loops(settings, runner, codec, guard, send)]  # control topic, risk stage (issue 14)
    try:
        async with serving_tools(settings, runner.tools, producer, codec):  # MCP servers (issue 15)
            await run_all(loops, stop)
    finally:
        await close(producer, "producer")


def _memory(settings: Settings) -> Any:
    """Memory context for the agents (issue 5); AGENTSTREAM_MEMORY_CONTEXT_K=0 turns it off."""
    if settings.memory_context_k <= 0:
        return None
    from streams.memory.tiers import MemoryRecall, build_retriever

    return MemoryRecall(build_retriever(settings), settings.memory_context_k)
