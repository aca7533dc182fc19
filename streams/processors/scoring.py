"""Prompt experiments in the stream: judge outputs, score outcomes, decide, and act on decisions.

- judge: agent.outputs that ran under an experiment -> a PromptOutcome on prompt.outcomes (the
  simulated judge of agents/judging.py), keyed by experiment, its id stable per output.
- score: prompt.outcomes -> the experiment's statistics in PostgreSQL. Each outcome is counted once,
  in one transaction with the new state, the statistics, a history point and the decision it takes
  (`PromptRegistry.count_outcome`); on promote/stop the winner becomes primary, the worker's prompt
  cache is dropped and a PromptDecision (id `experiment:decision`) goes to prompt.decisions. An
  outcome read again (after a crash or a rebalance) counts nothing and sends the decision again, if
  there is one, so a decision is never lost between the database and the topic.
Both run on ordered consumers (streams/processors/ordered.py): nothing is committed unhandled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from agents.clock import now_ms
from agents.experiment_scoring import score_outcome
from agents.judging import SimulatedJudge, experiment_outcome
from agents.prompt_registry import Experiment, PromptRegistry
from schemas import Codec
from streams.logs import get_logger
from streams.observability.telemetry import telemetry
from streams.processors.guard import Guard, Incoming, Send
from streams.processors.ordered import OrderedConsumer
from streams.settings import Settings
from streams.topics import OUTPUTS, PROMPT_DECISIONS, PROMPT_OUTCOMES

__all__ = ["ExperimentCache", "OutcomeScorer", "OutputJudge", "prompt_processors"]

log = get_logger(__name__)


class ExperimentCache:
    """Experiment definitions read from the registry, cached for `ttl_s` (status can change)."""

    def __init__(self, registry: PromptRegistry, ttl_s: float) -> None:
        self.registry, self.ttl_s = registry, ttl_s
        self._cache: dict[str, tuple[float, Experiment]] = {}

    async def get(self, name: str) -> Experiment:
        hit = self._cache.get(name)
        if hit is None or time.monotonic() - hit[0] > self.ttl_s:
            hit = (time.monotonic(), await asyncio.to_thread(self.registry.experiment, name))
            self._cache[name] = hit
        return hit[1]


class OutcomeScorer:
    """One PromptOutcome -> counted once in the experiment's statistics, and a decision once the rule says so."""

    def __init__(self, guard: Guard, experiments: ExperimentCache, send_decision: Send,
                 on_decision: Callable[[], None]) -> None:
        self.guard, self.experiments = guard, experiments
        self.send_decision, self.on_decision = send_decision, on_decision

    async def __call__(self, incoming: Incoming) -> None:
        outcome = await self.guard.decode("PromptOutcome", incoming, "score-decode")
        if outcome is None:
            return
        name, oid = outcome["experiment"], outcome["outcome_id"]
        exp = await self.experiments.get(name)  # an unknown experiment: RegistryError, a dead letter
        registry = self.experiments.registry
        step = await asyncio.to_thread(registry.count_outcome, name, oid,
                                       lambda state: score_outcome(state, exp, outcome, now_ms()))
        if step is None:
            log.info("duplicate outcome", stage="score", experiment=name, outcome_id=oid)
            state = await asyncio.to_thread(registry.experiment_state, name)
            if state is not None and state.get("decision"):
                await self._send(name, state["decision"])  # it may not have left before a crash
            return
        telemetry.experiment_decision(step.decision.decision if step.decision is not None else "continue")
        if step.decision is not None:
            self.on_decision()
            await self._send(name, step.state["decision"])
            log.info("prompt decision", stage="score", experiment=name, decision=step.decision.decision,
                     winner=step.decision.winner, n=step.state["n"])

    async def _send(self, name: str, decision: dict[str, Any]) -> None:
        record = {"decision_id": f"{name}:{decision['decision']}", "experiment": name,
                  "decision": decision["decision"], "winner": decision["winner"], "reason": decision["reason"],
                  "stats": decision.get("stats") or {}, "created_at": int(decision["at"])}
        await self.send_decision(name.encode(), self.guard.codec.encode("PromptDecision", record))


class OutputJudge:
    """One AgentOutput that ran under an experiment -> its PromptOutcome (the simulated judge), keyed by experiment."""

    def __init__(self, guard: Guard, registry: PromptRegistry, send_outcome: Send) -> None:
        self.guard, self.registry, self.send_outcome = guard, registry, send_outcome
        self.versions: dict[tuple[str, int], dict[str, Any]] = {}  # versions are immutable: cached for good
        self.judge = SimulatedJudge()

    async def __call__(self, incoming: Incoming) -> None:
        output = await self.guard.decode("AgentOutput", incoming, "judge-decode")
        meta = (output or {}).get("metadata") or {}
        if output is None or "experiment" not in meta:
            return
        key = (meta["prompt"], int(meta["prompt_version"]))
        if key not in self.versions:
            self.versions[key] = (await asyncio.to_thread(self.registry.get, *key)).metadata
        outcome = await experiment_outcome(self.judge, output, self.versions[key])
        if outcome is not None:
            await self.send_outcome(outcome["experiment"].encode(), self.guard.codec.encode("PromptOutcome", outcome))


def prompt_processors(settings: Settings, codec: Codec, guard: Guard, send: Callable[[str], Send],
                      on_decision: Callable[[], None]) -> list[OrderedConsumer]:
    """The scoring consumer, and the judge unless disabled; `send(topic)` sends to a project topic."""
    experiments = ExperimentCache(PromptRegistry(settings.postgres_dsn), settings.prompt_cache_ttl_s)
    score = OutcomeScorer(guard, experiments, send(PROMPT_DECISIONS), on_decision)
    consumers = [OrderedConsumer(settings, "score", [settings.topic(PROMPT_OUTCOMES)], guard, score)]
    if settings.judge_enabled:
        judge = OutputJudge(guard, PromptRegistry(settings.postgres_dsn), send(PROMPT_OUTCOMES))
        consumers.append(OrderedConsumer(settings, "judge", [settings.topic(OUTPUTS)], guard, judge))
    return consumers
