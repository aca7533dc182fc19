"""An offline, deterministic LLM registered with litellm as the provider `simulator`.

It is plainly a simulator: answers are derived from a hash of the model and the messages, so the
same input always gives the same output (replays and tests can compare runs). Latency can be set
to make concurrency measurable; jitter is also derived from the hash, so it is deterministic too.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from typing import Any

import litellm
from litellm import CustomLLM, ModelResponse

from agents.judging import JUDGE_MARKER
from agents.models import SIMULATOR_MODELS

__all__ = ["PROVIDER", "SimulatorLLM", "install_simulator"]

PROVIDER = "simulator"
# A judge request lists "### Candidate <k>" blocks; the simulator scores each, as a judge model would.
_CANDIDATE = re.compile(r"^### Candidate (\d+)$", re.MULTILINE)
_ANSWERED_BY = re.compile(r"^\[([^\]\s]+)\]")  # every answer opens with `[model]`
_QUALITY = {m.name.split("/", 1)[-1]: m.quality for m in SIMULATOR_MODELS}  # answers name the model without provider

_OPENERS = (
    "Here is a plan",
    "Proposed change",
    "Answer",
    "Summary of the approach",
    "Result",
)
_STEPS = (
    "read the relevant module and its tests",
    "write a failing test that captures the request",
    "make the smallest change that passes it",
    "check edge cases: empty input, large input, bad input",
    "update the documentation and the changelog",
    "measure before and after on the benchmark",
    "review the diff for repeated code",
)


def _text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


def _tokens(text: str) -> int:
    """A rough, stable token count (about 4 characters a token), never zero."""
    return max(1, len(text) // 4)


def _grade(prompt: str, k: str, rng: random.Random) -> float:
    """A judge's score for candidate `k`: an answer of a simulator model scores about ten times that model's
    quality (so a cheaper model's answers grade lower, as they would), give or take 1.5; anything else 3-10."""
    block = prompt.split(f"### Candidate {k}\n", 1)[-1]
    answered_by = _ANSWERED_BY.match(block)
    quality = _QUALITY.get(answered_by.group(1).split("/", 1)[-1]) if answered_by else None
    if quality is None:
        return rng.randint(30, 100) / 10
    return round(min(10.0, max(0.0, 10 * quality + rng.uniform(-1.5, 1.5))), 1)


class SimulatorLLM(CustomLLM):
    """litellm custom provider that answers offline, deterministically."""

    def __init__(self, latency_ms: float = 0.0, jitter_ms: float = 0.0) -> None:
        super().__init__()
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms

    def _answer(self, model: str, messages: list[dict[str, Any]]) -> tuple[ModelResponse, float]:
        prompt = _text(messages)
        digest = hashlib.sha256(f"{model}\n{prompt}".encode()).digest()
        rng = random.Random(digest)  # deterministic per input, not for security
        last = str(messages[-1].get("content") or "") if messages else ""
        topic = " ".join(last.split()[:12])
        steps = rng.sample(_STEPS, k=3)
        judged = _CANDIDATE.findall(prompt) if JUDGE_MARKER in prompt else []
        content = "\n".join(f"candidate {k}: {_grade(prompt, k, rng):g}" for k in judged) or (
            f"[{model}] {rng.choice(_OPENERS)} for: {topic}\n"
            + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
            + f"\nconfidence: {rng.randint(50, 99)}%"
        )
        tokens_in, tokens_out = _tokens(prompt), _tokens(content)
        response = ModelResponse(
            model=model,
            choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            usage={"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out},
        )
        delay_ms = self.latency_ms + (rng.uniform(-1.0, 1.0) * self.jitter_ms if self.jitter_ms else 0.0)
        return response, max(0.0, delay_ms) / 1000.0

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        response, delay = self._answer(model, messages)
        if delay:
            time.sleep(delay)
        return response

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        response, delay = self._answer(model, messages)
        if delay:
            await asyncio.sleep(delay)
        return response


def install_simulator(latency_ms: float = 0.0, jitter_ms: float = 0.0) -> SimulatorLLM:
    """Register the simulator with litellm (replacing an earlier registration) and return it."""
    handler = SimulatorLLM(latency_ms=latency_ms, jitter_ms=jitter_ms)
    others = [p for p in litellm.custom_provider_map if p.get("provider") != PROVIDER]
    # litellm reads this map on every call, so replacing the handler takes effect at once.
    litellm.custom_provider_map = [*others, {"provider": PROVIDER, "custom_handler": handler}]
    return handler
