"""Run a worker: the Faust app with the LLM side wired in, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

import faust
import litellm

from agents.llm import LLM
from agents.models import register_models
from agents.prompt_chooser import PromptChooser
from agents.prompt_registry import PromptRegistry
from agents.runner import TaskRunner
from agents.simulator import install_simulator
from schemas import default_codec
from streams.admin import ensure_topics
from streams.app import build_app
from streams.logs import get_logger
from streams.settings import Settings
from streams.topics import table_specs, topic_specs

__all__ = ["run_worker"]

log = get_logger(__name__)


def _prompts(settings: Settings) -> PromptChooser | None:
    """The prompt registry view the runner chooses prompts from (issue 4); None when disabled."""
    if not settings.prompts_enabled:
        return None
    return PromptChooser(PromptRegistry(settings.postgres_dsn).migrate(), ttl_s=settings.prompt_cache_ttl_s)


def run_worker(settings: Settings) -> None:
    """Create the topics, then consume until stopped. Blocks."""
    asyncio.run(ensure_topics(settings, topic_specs(settings) + table_specs(settings)))
    asyncio.set_event_loop(asyncio.new_event_loop())  # Faust runs its own loop
    install_simulator(settings.simulator_latency_ms, settings.simulator_jitter_ms)
    register_models()
    # litellm loads much of itself lazily on its first calls; pay that once here, not on the first tasks.
    # The simulator answers it (never a billed model), synchronously, outside any event loop.
    litellm.completion(model="simulator/fast-1", messages=[{"role": "user", "content": "warm-up"}])
    runner = TaskRunner(LLM(timeout_s=settings.llm_timeout_s), model=settings.model, memory=_memory(settings),
                        prompts=_prompts(settings))
    app = build_app(settings, runner, default_codec())
    log.info("worker starting", stage="worker", app_id=settings.app_id, kafka=settings.kafka_servers,
             model=settings.model, concurrency=settings.worker_concurrency)
    worker = faust.Worker(app, loglevel=settings.log_level if settings.log_level != "warning" else "warn",
                          quiet=True, redirect_stdouts=False, override_logging=False)
    worker.execute_from_commandline()


def _memory(settings: Settings) -> object | None:
    """Memory context for the agents (issue 5); AGENTSTREAM_MEMORY_CONTEXT_K=0 turns it off."""
    if settings.memory_context_k <= 0:
        return None
    from streams.memory import MemoryRecall, build_retriever

    return MemoryRecall(build_retriever(settings), settings.memory_context_k)
