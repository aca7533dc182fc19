"""Prompt experiments in the stream: judge outputs, score outcomes, decide, and act on decisions.

- judge: agent.outputs that ran under an experiment -> a PromptOutcome on prompt.outcomes (the
  simulated judge of agents/judging.py), keyed by experiment.
- scoring: prompt.outcomes -> per-experiment statistics in a changelog-backed Faust table (one
  partition owns an experiment, since outcomes are keyed by it), each outcome_id counted once
  (a second changelog-backed table of counted ids), the sequential rule checked after every
  outcome, and on promote/stop: the registry updated (the winner becomes primary), the worker's
  prompt cache dropped, and a PromptDecision sent to prompt.decisions.
Records arrive as raw bytes and are decoded inside a guard; failures become dead letters.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust

from agents.clock import now_ms
from agents.experiment_scoring import score_outcome
from agents.judging import SimulatedJudge, experiment_outcome
from agents.prompt_chooser import PromptChooser
from agents.prompt_registry import Experiment, PromptRegistry, RegistryError
from schemas import Codec, DecodeError
from streams.logs import get_logger
from streams.processors.guard import DeadLetterSender
from streams.settings import Settings
from streams.topics import (
    DEADLETTERS,
    OUTPUTS,
    PROMPT_DECISIONS,
    PROMPT_OUTCOMES,
    PROMPT_SCORES_TABLE,
    PROMPT_SEEN_TABLE,
)

__all__ = ["register_prompt_processors"]

log = get_logger(__name__)

# The app's serializers are raw bytes; the tables hold JSON (experiment name -> state, outcome id -> n).
_JSON = faust.Schema(key_serializer="json", value_serializer="json")


class _Experiments:
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


def register_prompt_processors(app: faust.App, topics: dict[str, faust.TopicT], chooser: PromptChooser,
                               codec: Codec, settings: Settings) -> None:
    """Attach the judge and scoring processors and their tables to `app`."""
    deadletters, outcomes_topic, decisions = topics[DEADLETTERS], topics[PROMPT_OUTCOMES], topics[PROMPT_DECISIONS]
    registry = PromptRegistry(settings.postgres_dsn)  # its own connection: the chooser's is used elsewhere
    judge_registry = PromptRegistry(settings.postgres_dsn)
    experiments = _Experiments(registry, settings.prompt_cache_ttl_s)
    scores = app.Table(PROMPT_SCORES_TABLE, default=None, partitions=settings.partitions,
                       schema=_JSON)
    seen = app.Table(PROMPT_SEEN_TABLE, default=None, partitions=settings.partitions,
                     schema=_JSON)

    send_dead = DeadLetterSender(deadletters, codec)

    async def decoded(event: faust.EventT, event_type: str, stage: str) -> dict[str, Any] | None:
        """The record, or None after dead-lettering bytes that do not decode as `event_type`."""
        try:
            return codec.decode_as(event_type, event.value or b"")
        except DecodeError as exc:
            await send_dead(f"{stage}-decode", event, exc)
            return None

    async def guarded(stream: faust.StreamT, handle: Any, stage: str) -> None:
        """Run `handle` on every event; an exception becomes a dead letter, never the end of the stream."""
        async for event in stream.events():
            try:
                await handle(event)
            except Exception as exc:  # a bug or a bad record must not stop the stream
                await send_dead(stage, event, exc)

    async def score(event: faust.EventT) -> None:
        outcome = await decoded(event, "PromptOutcome", "score")
        if outcome is None:
            return
        name = outcome["experiment"]
        if event.key != name.encode():
            # The table is partitioned like the topic: an outcome must be keyed by its experiment.
            await send_dead("score-key", event, f"outcome key {event.key!r} is not its experiment {name!r}")
            return
        oid = outcome["outcome_id"]
        if seen.get(oid) is not None:
            log.info("duplicate outcome", stage="score", experiment=name, outcome_id=oid)
            return
        try:
            exp = await experiments.get(name)
            step = score_outcome(scores.get(name), exp, outcome, now_ms())
        except (RegistryError, ValueError) as exc:
            await send_dead("score", event, exc)
            return
        scores[name] = step.state
        seen[oid] = step.state["n"]
        await asyncio.to_thread(registry.save_stats, name, step.state["arms"], step.state["n"], step.point)
        if step.decision is not None:
            d = step.decision
            await asyncio.to_thread(registry.record_decision, name, d.decision, d.winner, d.reason)
            chooser.invalidate()
            record = {"decision_id": f"{name}:{d.decision}", "experiment": name, "decision": d.decision,
                      "winner": d.winner, "reason": d.reason, "stats": d.stats, "created_at": now_ms()}
            await decisions.send(key=name.encode(), value=codec.encode("PromptDecision", record))
            log.info("prompt decision", stage="score", experiment=name, decision=d.decision, winner=d.winner,
                     n=step.state["n"])

    @app.agent(outcomes_topic, name="prompt-scoring", concurrency=1)
    async def prompt_scoring(stream: faust.StreamT) -> None:
        await guarded(stream, score, "score")

    versions: dict[tuple[str, int], dict[str, Any]] = {}  # versions are immutable: cache for good
    simulated = SimulatedJudge()

    async def judge(event: faust.EventT) -> None:
        output = await decoded(event, "AgentOutput", "judge")
        meta = (output or {}).get("metadata") or {}
        if output is None or "experiment" not in meta:
            return
        key = (meta["prompt"], int(meta["prompt_version"]))
        if key not in versions:
            versions[key] = (await asyncio.to_thread(judge_registry.get, *key)).metadata
        outcome = await experiment_outcome(simulated, output, versions[key])
        if outcome is not None:
            await outcomes_topic.send(key=outcome["experiment"].encode(),
                                      value=codec.encode("PromptOutcome", outcome))

    if settings.judge_enabled:
        @app.agent(topics[OUTPUTS], name="prompt-judge", concurrency=1)
        async def experiment_judge(stream: faust.StreamT) -> None:
            await guarded(stream, judge, "judge")
