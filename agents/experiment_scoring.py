"""One outcome applied to one experiment's state: the pure step the scoring processor runs.

The state is a JSON-friendly dict (it lives in PostgreSQL, `PromptRegistry.count_outcome`): each
variant's running statistics, the number of outcomes counted, and the decision once taken (with the
statistics it was taken on). Keeping the step free of I/O makes it testable on its own and identical
in the processor and a replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.experiment_stats import ArmStats, Decision, decide
from agents.prompt_registry import Experiment

__all__ = ["ScoreStep", "new_state", "score_outcome"]

State = dict[str, Any]


@dataclass(frozen=True)
class ScoreStep:
    """The new state, the decision taken by this outcome (if it took one), and a history point."""

    state: State
    decision: Decision | None
    point: dict[str, float]


def new_state(exp: Experiment) -> State:
    return {"arms": {v: ArmStats().to_dict() for v in exp.variants}, "n": 0, "decision": None}


def score_outcome(state: State | None, exp: Experiment, outcome: dict[str, Any], now_ms: int) -> ScoreStep:
    """Count `outcome` (the caller has already ruled out a duplicate) and apply the decision rule.

    A variant that is not in the experiment raises ValueError (the caller dead-letters the record).
    The rule runs only while no decision has been taken and the experiment is running.
    """
    state = new_state(exp) if state is None else {**state, "arms": dict(state["arms"])}
    variant = outcome["variant"]
    if variant not in exp.variants:
        raise ValueError(f"variant {variant!r} is not in experiment {exp.name!r} ({', '.join(exp.variants)})")
    arm = ArmStats.from_dict(state["arms"].get(variant) or {})
    quality = min(1.0, max(0.0, float(outcome.get("quality") or 0.0)))
    arm.add(bool(outcome["success"]), quality, metric=exp.metric)
    state["arms"][variant] = arm.to_dict()
    state["n"] = int(state["n"]) + 1
    arms = [(v, ArmStats.from_dict(state["arms"].get(v) or {})) for v in exp.variants]
    verdict = decide(arms, alpha=exp.alpha, min_samples=exp.min_samples)
    point = {k: v for k, v in verdict.stats.items() if k.endswith((".diff", ".lower", ".upper"))}
    for name, a in arms:
        point[f"{name}.n"] = float(a.n)
        point[f"{name}.mean"] = a.mean
    point["at"] = float(now_ms)
    decision = None
    if state["decision"] is None and exp.status == "running" and verdict.decision in ("promote", "stop"):
        decision = verdict
        state["decision"] = {"decision": verdict.decision, "winner": verdict.winner, "reason": verdict.reason,
                             "at": now_ms, "n": state["n"], "stats": verdict.stats}
    return ScoreStep(state, decision, point)
