"""Run a worker until SIGTERM/SIGINT: the task stage and the Faust app, on one event loop.

The task stage (streams/processors/tasks.py) is its own consumer group; it runs as a service of the
Faust worker, so one signal stops both: the stage first (it drains its tasks, commits, leaves its
group), then the Faust app.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import click
import faust
import litellm
import mode
import psycopg

from agents.factory import RunnerConfig, build_runner
from agents.prompt_chooser import PromptChooser
from agents.prompt_registry import PromptRegistry
from agents.prompt_templates import RenderLimits
from agents.simulator import install_simulator
from schemas import default_codec
from streams.admin import ensure_topics
from streams.app import build_app
from streams.logs import get_logger
from streams.processors.tasks import TaskStage
from streams.settings import Settings

__all__ = ["TaskStageService", "run_worker", "runner_config", "settle_heap"]

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
    asyncio.run(ensure_topics(settings, timeout_s=settings.startup_timeout_s))  # every topic, up front
    asyncio.set_event_loop(asyncio.new_event_loop())  # Faust runs its own loop
    install_simulator(settings.simulator_latency_ms, settings.simulator_jitter_ms)
    # litellm loads much of itself lazily on its first calls; pay that once here, not on the first tasks.
    # The simulator answers it (never a billed model), synchronously, outside any event loop.
    litellm.completion(model="simulator/fast-1", messages=[{"role": "user", "content": "warm-up"}])
    runner = build_runner(runner_config(settings), memory=_memory(settings), prompts=_prompts(settings))
    codec = default_codec()
    app = build_app(settings, runner, codec)
    stage = TaskStageService(TaskStage(settings, runner, codec), app, settings.startup_timeout_s)
    settle_heap()
    log.info("worker starting", stage="worker", app_id=settings.app_id, kafka=settings.kafka_servers,
             concurrency=settings.worker_concurrency)
    worker = faust.Worker(app, stage, loglevel=settings.log_level if settings.log_level != "warning" else "warn",
                          quiet=True, redirect_stdouts=False, override_logging=False)
    worker.execute_from_commandline()


class TaskStageService(mode.Service):
    """The task stage as a service of the Faust worker: started with it, drained when it stops;
    a crash of the stage crashes the worker (its supervisor restarts it).

    Tasks start only once the Faust app has settled into its group: a fresh Faust member rebalances
    more than once at start-up and drops records that arrive meanwhile (docs/delivery.md), so outputs
    produced at once would never reach the prompt judge."""

    SETTLED_S = 3.0  # no rebalance for this long after the first one: the group has settled

    def __init__(self, stage: TaskStage, app: faust.App, settle_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage, self.app, self.settle_timeout_s = stage, app, settle_timeout_s
        self._stop = asyncio.Event()
        self._running: asyncio.Future[None] | None = None

    async def on_start(self) -> None:
        self._running = asyncio.ensure_future(self._run())

    async def _faust_settled(self) -> None:
        deadline = time.monotonic() + self.settle_timeout_s
        quiet_since, seen = time.monotonic(), (self.app.rebalancing_count, self.app.rebalancing)
        while time.monotonic() < deadline and not self._stop.is_set():
            now = (self.app.rebalancing_count, self.app.rebalancing)
            if now != seen:
                quiet_since, seen = time.monotonic(), now
            if now[0] >= 1 and not now[1] and time.monotonic() - quiet_since >= self.SETTLED_S:
                return
            await asyncio.sleep(0.2)
        log.warning("Faust group not settled; starting tasks anyway", stage="worker",
                    rebalances=self.app.rebalancing_count)

    async def _run(self) -> None:
        try:
            await self._faust_settled()
            await self.stage.run(self._stop)
        except Exception as exc:  # reported, then the worker stops with an error
            log.exception("task stage crashed", stage="tasks", error=repr(exc)[:300])
            await self.crash(exc)

    async def on_stop(self) -> None:
        self._stop.set()
        if self._running is not None:
            await asyncio.shield(self._running)


def _memory(settings: Settings) -> Any:
    """Memory context for the agents (issue 5); AGENTSTREAM_MEMORY_CONTEXT_K=0 turns it off."""
    if settings.memory_context_k <= 0:
        return None
    from streams.memory.tiers import MemoryRecall, build_retriever

    return MemoryRecall(build_retriever(settings), settings.memory_context_k)
