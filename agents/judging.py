"""Judging behind one interface: `judge(task, candidates) -> Judgement`, a Verdict per candidate.

Everything that grades answers uses it: the `quality` pattern (agents/runner.py), replay scoring
(streams/replay/run.py) and the prompt-experiment outcomes (streams/processors/scoring.py). Two
judges stand behind it:

- ModelJudge asks the `judging` agent through the step path every agent call takes (agents/swarm.py
  StepCaller: the router's fallback chain, the budget's reserve and settle, redaction of the text
  that goes out and comes back), so judging is routed, paid for and redacted like any other call.
  Its answer is read leniently; a candidate it gives no score for gets a verdict marked unparsed,
  never an exception.
- SimulatedJudge calls no model and is plainly simulated: whether a candidate succeeds is a hash of
  its id against the success probability in its metadata (`simulated_success`, a prompt version's
  metadata, 0.5 by default), so every replay judges an output the same way and a test can make one
  prompt version better than another just by saying so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.assignment import hash_unit
from agents.budget import TaskBudget
from agents.registry import AgentSpec
from agents.swarm import StepCaller, StepContext, StepOutcome
from schemas.events import Record

__all__ = ["DEFAULT_JUDGE_MODEL", "JUDGE_MARKER", "Candidate", "Judge", "JudgeTask", "Judgement", "ModelJudge",
           "SimulatedJudge", "Verdict", "experiment_outcome", "judge_prompt", "parse_scores"]

# A task record (task_id, description, tenant, ...), or the context of a task being run (its budget, its
# pattern, its memories): a judge inside a run spends from the run's budget and sees what its steps saw.
JudgeTask = Mapping[str, Any] | StepContext

DEFAULT_JUDGE_MODEL = "simulator/quality-1"  # replay's judge: one fixed model keeps two runs' scores comparable
JUDGE_MARKER = "Score each candidate"  # every judge request carries it (the simulator answers such requests)

# `candidate 2: 7`, `Candidate #2 = 7.5/10`, `candidate 2 - 85%`; a bare number is on the 0-10 scale asked for.
_LINE = re.compile(r"candidate\s*#?\s*(\d+)\s*[:=\-]\s*(\d+(?:\.\d+)?)\s*(%|/\s*(\d+(?:\.\d+)?))?", re.IGNORECASE)
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")


@dataclass(frozen=True)
class Candidate:
    """One answer to judge: a unique id (a step number, an output_id), its text, and facts the judge may use."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """A judge's grade of one candidate: a score in [0, 1], passed or not, and why.

    `parsed` is False when the judge could not grade it (the model's answer gave no readable score, or
    the model call failed): the score is then 0 and means nothing. `model` and `cost_usd` say which
    model graded it and its share of that call's cost ("" and 0 when no model was called).
    """

    candidate_id: str
    score: float
    passed: bool
    reason: str
    parsed: bool = True
    model: str = ""
    cost_usd: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"a verdict's score is in [0, 1], got {self.score}")


@dataclass(frozen=True)
class Judgement:
    """The verdicts, in the candidates' order, and the model call (an AgentOutput step) if one was made."""

    verdicts: tuple[Verdict, ...]
    call: StepOutcome | None = None

    def of(self, candidate_id: str) -> Verdict:
        return next(v for v in self.verdicts if v.candidate_id == candidate_id)

    @property
    def cost_usd(self) -> float:
        return sum(v.cost_usd for v in self.verdicts)


class Judge(Protocol):
    """What grades answers: one Verdict per candidate, in order."""

    async def judge(self, task: JudgeTask, candidates: Sequence[Candidate]) -> Judgement: ...


def judge_prompt(description: str, texts: Sequence[str]) -> str:
    """The request a judge model gets: the task, the candidates numbered from 1, and the answer format."""
    listing = "\n\n".join(f"### Candidate {k}\n{text}" for k, text in enumerate(texts, 1))
    return (f"Task: {description}\n\n{listing}\n\n{JUDGE_MARKER} from 0 to 10, "
            f"one line each as 'candidate <number>: <score>'.")


def _share(value: str, unit: str, denominator: str) -> float | None:
    """A score written as a number, a percentage or a fraction, as a share in [0, 1]; None if meaningless."""
    number = float(value)
    if unit == "%":
        scale = 100.0
    elif denominator:
        scale = float(denominator)
    else:
        scale = 10.0 if number <= 10 else 100.0  # asked for 0-10; a bare 85 can only be out of 100
    return None if scale <= 0 else round(min(1.0, number / scale), 6)


def parse_scores(text: str, count: int) -> dict[int, float]:
    """The scores a judge's answer gives candidates 1..count, each as a share in [0, 1].

    Reads `candidate k: score` lines (the last line for a candidate wins). An answer about a single
    candidate may instead end with a percentage (`score: 87%`): its last one counts. Candidates the
    answer gives no score for are missing from the result.
    """
    found: dict[int, float] = {}
    for k, value, unit, denominator in _LINE.findall(text):
        share = _share(value, unit, denominator)
        if 1 <= int(k) <= count and share is not None:
            found[int(k)] = share
    if not found and count == 1 and (percents := _PERCENT.findall(text)):
        found[1] = min(100.0, float(percents[-1])) / 100.0
    return found


def _context(task: JudgeTask) -> StepContext:
    """The step context a judging call runs in; a bare task is judged outside its run, so its own budget
    (what the run may spend) does not apply, only its tenant's."""
    if isinstance(task, StepContext):
        return task
    return StepContext(dict(task), TaskBudget(None), "judge")


class ModelJudge:
    """Grades with one call of the `judging` agent through the step path (router, budget, redaction)."""

    def __init__(self, steps: StepCaller, spec: AgentSpec, pass_mark: float = 0.5) -> None:
        self.steps, self.spec, self.pass_mark = steps, spec, pass_mark

    async def judge(self, task: JudgeTask, candidates: Sequence[Candidate], *, step: int = 1) -> Judgement:
        """All non-empty candidates in one call (as step `step` of the task); an empty one scores 0 unasked."""
        if len({c.id for c in candidates}) != len(candidates):
            raise ValueError(f"candidate ids must be unique: {[c.id for c in candidates]}")
        verdicts = {c.id: Verdict(c.id, 0.0, False, "empty answer") for c in candidates if not c.text.strip()}
        asked = [c for c in candidates if c.id not in verdicts]
        if not asked:
            return Judgement(tuple(verdicts[c.id] for c in candidates))
        ctx = _context(task)
        call = await self.steps.ask(ctx, self.spec, "judging", step,
                                    judge_prompt(ctx.task["description"], [c.text for c in asked]),
                                    {"judged": ",".join(c.id for c in asked)})
        verdicts.update(self._read(call, asked))
        return Judgement(tuple(verdicts[c.id] for c in candidates), call)

    def _read(self, call: StepOutcome, asked: list[Candidate]) -> dict[str, Verdict]:
        model = call.record.get("model", "")
        cost = call.record.get("cost_usd", 0.0) / len(asked)  # each candidate's share of the call
        if call.text is None:
            reason = f"the judge did not answer: {call.record.get('error')}"
            return {c.id: Verdict(c.id, 0.0, False, reason, False, model, cost) for c in asked}
        scores = parse_scores(call.text, len(asked))
        tail = call.text.strip()[-200:]
        read: dict[str, Verdict] = {}
        for k, c in enumerate(asked, 1):
            score = scores.get(k)
            read[c.id] = (Verdict(c.id, 0.0, False, f"unparsed: no score for candidate {k} in: {tail}", False,
                                  model, cost) if score is None
                          else Verdict(c.id, score, score >= self.pass_mark, tail, True, model, cost))
        return read


class SimulatedJudge:
    """Deterministic simulated grades: success is hash(id) < the candidate's `simulated_success`."""

    async def judge(self, task: JudgeTask, candidates: Sequence[Candidate]) -> Judgement:
        return Judgement(tuple(self.verdict(c) for c in candidates))

    @staticmethod
    def verdict(candidate: Candidate) -> Verdict:
        p = float(candidate.metadata.get("simulated_success", 0.5))
        success = hash_unit("judge", candidate.id) < p
        quality = 0.5 * hash_unit("quality", candidate.id) + (0.5 if success else 0.0)
        return Verdict(candidate.id, quality, success, f"simulated: success probability {p:g}")


async def experiment_outcome(judge: Judge, output: Mapping[str, Any],
                             version_metadata: Mapping[str, Any]) -> Record | None:
    """The PromptOutcome of an AgentOutput that answered under an experiment variant, as the judge grades it.

    None for any other output, and when the judge could not grade it (no evidence either way).
    The candidate is the output itself (id: output_id) with its prompt version's metadata.
    """
    meta = output.get("metadata") or {}
    if not meta.get("experiment") or not meta.get("variant") or output.get("status") != "ok":
        return None
    task = {"task_id": output["task_id"], "description": ""}  # an output does not carry its task's text
    judgement = await judge.judge(task, [Candidate(output["output_id"], output.get("output") or "",
                                                   version_metadata)])
    verdict = judgement.verdicts[0]
    if not verdict.parsed:
        return None
    return {
        "outcome_id": f"judge:{output['output_id']}",
        "task_id": output["task_id"],
        "experiment": meta["experiment"],
        "variant": meta["variant"],
        "success": verdict.passed,
        "quality": verdict.score,
        "source": "judge",
        "created_at": output["created_at"],
    }
