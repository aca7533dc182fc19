"""Prompt experiments in the stream: judge outputs, score outcomes, decide, and act on decisions.

- judge: agent.outputs that ran under an experiment -> a PromptOutcome on prompt.outcomes (the
  simulated judge of agents/judging.py), keyed by experiment.
- scoring: prompt.outcomes -> per-experiment statistics in a changelog-backed Faust table (one
  partition owns an experiment, since outcomes are keyed by it), each outcome_id counted once
  (a second changelog-backed table of counted ids), the sequential rule checked after every
  outcome, and on promote/stop: the registry updated (the winner becomes primary), the worker's
  prompt cache dropped, and a PromptDecision sent to prompt.decisions.
Records arrive as raw bytes and are decoded inside the guard (streams/processors/guard.py); failures
become dead letters. The handlers are plain classes; `register_prompt_processors` wires them to Faust.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import faust

from agents.clock import now_ms
from agents.experiment_scoring import score_outcome
from agents.judging import SimulatedJudge, experiment_outcome
from agents.prompt_chooser import PromptChooser
from agents.prompt_registry import Experiment, PromptRegistry
from schemas import Codec
from streams.logs import get_logger
from streams.processors.guard import Guard, Incoming, Send, topic_sender
from streams.settings import Settings
from streams.topics import (
    DEADLETTERS,
    OUTPUTS,
    PROMPT_DECISIONS,
    PROMPT_OUTCOMES,
    PROMPT_SCORES_TABLE,
    PROMPT_SEEN_TABLE,
)

__all__ = ["ExperimentCache", "OutcomeScorer", "OutputJudge", "register_prompt_processors"]

log = get_logger(__name__)

# The app's serializers are raw bytes; the tables hold JSON (experiment name -> state, outcome id -> n).
_JSON = faust.Schema(key_serializer="json", value_serializer="json")


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
    """One PromptOutcome -> the experiment's statistics, and a decision once the rule says so.

    `scores` (experiment -> state) and `seen` (outcome id -> n) are Faust tables in the worker, dicts in tests.
    """

    def __init__(self, guard: Guard, experiments: ExperimentCache, scores: MutableMapping[str, Any],
                 seen: MutableMapping[str, Any], send_decision: Send, on_decision: Callable[[], None]) -> None:
        self.guard, self.experiments, self.scores, self.seen = guard, experiments, scores, seen
        self.send_decision, self.on_decision = send_decision, on_decision

    async def __call__(self, incoming: Incoming) -> None:
        outcome = await self.guard.decode("PromptOutcome", incoming, "score-decode")
        if outcome is None:
            return
        name = outcome["experiment"]
        if incoming.key != name.encode():
            # The table is partitioned like the topic: an outcome must be keyed by its experiment.
            await self.guard.dead("score-key", incoming, f"outcome key {incoming.key!r} is not its experiment {name!r}")
            return
        oid = outcome["outcome_id"]
        if self.seen.get(oid) is not None:
            log.info("duplicate outcome", stage="score", experiment=name, outcome_id=oid)
            return
        exp = await self.experiments.get(name)  # an unknown experiment: RegistryError, a dead letter
        step = score_outcome(self.scores.get(name), exp, outcome, now_ms())
        self.scores[name] = step.state
        self.seen[oid] = step.state["n"]
        registry = self.experiments.registry
        await asyncio.to_thread(registry.save_stats, name, step.state["arms"], step.state["n"], step.point)
        if step.decision is not None:
            d = step.decision
            await asyncio.to_thread(registry.record_decision, name, d.decision, d.winner, d.reason)
            self.on_decision()
            record = {"decision_id": f"{name}:{d.decision}", "experiment": name, "decision": d.decision,
                      "winner": d.winner, "reason": d.reason, "stats": d.stats, "created_at": now_ms()}
            await self.send_decision(name.encode(), self.guard.codec.encode("PromptDecision", record))
            log.info("prompt decision", stage="score", experiment=name, decision=d.decision, winner=d.winner,
                     n=step.state["n"])


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


def register_prompt_processors(app: faust.App, topics: dict[str, faust.TopicT], chooser: PromptChooser,
                               codec: Codec, settings: Settings) -> None:
    """Attach the judge and scoring processors and their tables to `app`."""
    guard = Guard(codec, topic_sender(topics[DEADLETTERS]))
    outcomes_topic = topics[PROMPT_OUTCOMES]
    # Their own connections: the chooser's is used elsewhere.
    experiments = ExperimentCache(PromptRegistry(settings.postgres_dsn), settings.prompt_cache_ttl_s)
    scores = app.Table(PROMPT_SCORES_TABLE, default=None, partitions=settings.partitions, schema=_JSON)
    seen = app.Table(PROMPT_SEEN_TABLE, default=None, partitions=settings.partitions, schema=_JSON)
    score = OutcomeScorer(guard, experiments, scores, seen, topic_sender(topics[PROMPT_DECISIONS]), chooser.invalidate)

    @app.agent(outcomes_topic, name="prompt-scoring", concurrency=1)
    async def prompt_scoring(stream: faust.StreamT) -> None:
        await guard.consume(stream, "score", score)

    if settings.judge_enabled:
        judge = OutputJudge(guard, PromptRegistry(settings.postgres_dsn), topic_sender(outcomes_topic))

        @app.agent(topics[OUTPUTS], name="prompt-judge", concurrency=1)
        async def experiment_judge(stream: faust.StreamT) -> None:
            await guard.consume(stream, "judge", judge)
