"""Build the task runner, and a judge outside any run, from explicit config: models, agents, routing, budgets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agents.budget import BudgetLedger, MemorySpendStore, SpendStore
from agents.clock import now_ms
from agents.judging import ModelJudge
from agents.models import SIMULATOR_MODELS, ModelInfo, load_models, register_models
from agents.observer import RunObserver
from agents.prompt_chooser import PromptChooser
from agents.registry import AgentRegistry, load_agents
from agents.routing import ModelRouter
from agents.runner import MemorySource, TaskRunner
from agents.swarm import StepCaller
from agents.tools import ToolKit

__all__ = ["RunnerConfig", "build_judge", "build_runner"]


@dataclass(frozen=True)
class RunnerConfig:
    """Everything the runner needs, passed down from the entry point's Settings."""

    models_file: Path | None = None
    agents_file: Path | None = None
    timeout_s: float = 60.0
    num_retries: int = 2
    retry_backoff_s: float = 0.5
    tenant_daily_budget_usd: float | None = None
    degrade_share: float = 0.8
    quality_candidates: int = 3
    max_in_flight: int = 1024
    pinned_model: str | None = None  # set: every step tries this model first (e.g. a replay's override)
    sequential_candidates: bool = False  # the quality pattern's candidates one after another (the bench's baseline)


def _load(config: RunnerConfig, models: tuple[ModelInfo, ...] | None,
          observer: RunObserver | None = None) -> tuple[AgentRegistry, ModelRouter]:
    """Load and validate the config files (a mistake fails here, at start), register prices, make the router."""
    table = models or (load_models(config.models_file) if config.models_file else SIMULATOR_MODELS)
    specs = load_agents(config.agents_file, table)
    register_models(table)
    router = ModelRouter(table, timeout_s=config.timeout_s, num_retries=config.num_retries,
                         retry_backoff_s=config.retry_backoff_s)
    if observer is not None:
        router.tracer = observer.tracer
    return AgentRegistry(specs), router


def build_runner(config: RunnerConfig, store: SpendStore | None = None,
                 models: tuple[ModelInfo, ...] | None = None, memory: MemorySource | None = None,
                 prompts: PromptChooser | None = None, observer: RunObserver | None = None,
                 tools: ToolKit | None = None) -> TaskRunner:
    """The task runner over the configured models and agents, its budgets kept in `store`; `observer`
    hears of every model call and budget event (metrics, traces: streams/observability/)."""
    registry, router = _load(config, models, observer)
    ledger = BudgetLedger(store or MemorySpendStore(), config.tenant_daily_budget_usd, config.degrade_share)
    return TaskRunner(registry, router, ledger, quality_candidates=config.quality_candidates,
                      max_in_flight=config.max_in_flight, memory=memory, pinned_model=config.pinned_model,
                      prompts=prompts, observer=observer, sequential_candidates=config.sequential_candidates,
                      tools=tools)


def build_judge(config: RunnerConfig, ledger: BudgetLedger | None = None,
                models: tuple[ModelInfo, ...] | None = None) -> ModelJudge:
    """A model judge outside any run (replay scoring): the configured `judging` agent and router, the
    config's pinned model tried first (it must be in the model table), spend kept in `ledger`."""
    registry, router = _load(config, models)
    if config.pinned_model is not None and config.pinned_model not in router.by_name:
        raise ValueError(f"judge model {config.pinned_model!r} is not in the model table "
                         f"({', '.join(router.by_name)})")
    registry.require("judging")
    ledger = ledger or BudgetLedger(MemorySpendStore(), config.tenant_daily_budget_usd, config.degrade_share)
    steps = StepCaller(router, ledger, registry.specs, config.max_in_flight, now_ms, config.pinned_model)
    return ModelJudge(steps, registry.for_capability("judging"))
