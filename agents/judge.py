"""A judge: one model call that scores an answer to a task in [0, 1].

Replay runs score every replayed (and every original) answer with the same judge, so the scores of
two runs are comparable. This is the small interface a richer judge (a swarm's judge agent) can
replace: anything with `async score(description, output) -> Verdict`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from agents.llm import LLM

__all__ = ["DEFAULT_JUDGE_MODEL", "Judge", "LLMJudge", "Verdict", "parse_score"]

DEFAULT_JUDGE_MODEL = "simulator/quality-1"

_SYSTEM = ("You are the judge. Read the task and the answer, and grade how well the answer does the task. "
           "End with one line `score: N%`, N from 0 to 100.")
_PERCENT = re.compile(r"(\d{1,3})\s*%")


@dataclass(frozen=True)
class Verdict:
    """A judge's grade of one answer, and what the judging call cost."""

    score: float
    model: str
    cost_usd: float
    rationale: str


class Judge(Protocol):
    """What replay needs from a judge."""

    async def score(self, description: str, output: str) -> Verdict: ...


def parse_score(text: str) -> float:
    """The last `N%` of the judge's reply as a share in [0, 1]; 0.0 when it gives none."""
    found = _PERCENT.findall(text)
    return min(100, int(found[-1])) / 100.0 if found else 0.0


class LLMJudge:
    """Scores with one litellm call; with the offline simulator the score is a pure function of the input."""

    def __init__(self, llm: LLM, model: str = DEFAULT_JUDGE_MODEL) -> None:
        self.llm = llm
        self.model = model

    async def score(self, description: str, output: str) -> Verdict:
        if not output.strip():  # nothing to grade: a failed task scores 0 without a call
            return Verdict(0.0, self.model, 0.0, "empty answer")
        messages = [{"role": "system", "content": _SYSTEM},
                    {"role": "user", "content": f"Task: {description}\n\nAnswer:\n{output}"}]
        completion = await self.llm.complete(self.model, messages)
        return Verdict(parse_score(completion.text), self.model, completion.cost_usd, completion.text[-200:])
