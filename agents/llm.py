"""The one call path to a model: litellm `acompletion`, timed and priced."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import litellm

__all__ = ["LLM", "Attempted", "Completion"]


@dataclass(frozen=True)
class Attempted:
    """A model that did not answer, and why (kind: timeout, rate_limited, server_error, ...)."""

    model: str
    kind: str
    error: str
    latency_ms: float

    def describe(self) -> str:
        return f"{self.model}: {self.kind}: {self.error[:200]}"


@dataclass(frozen=True)
class Completion:
    """What one model call produced and what it cost; `failures` are the models tried before it."""

    text: str
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float
    failures: tuple[Attempted, ...] = ()


def _cost(model: str, tokens_in: int, tokens_out: int) -> float:
    """Price from litellm's (local) cost map; a model it does not know costs what we cannot see: 0."""
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=tokens_in, completion_tokens=tokens_out
        )
    except Exception:  # litellm raises plain Exception subclasses for unmapped models
        return 0.0
    return float(prompt_cost + completion_cost)


class LLM:
    """Calls models through litellm with a per-call timeout; the clock is injectable for tests."""

    def __init__(self, timeout_s: float = 60.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.timeout_s = timeout_s
        self._clock = clock

    async def complete(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Completion:
        started = self._clock()
        response = await litellm.acompletion(
            model=model, messages=messages, timeout=self.timeout_s, num_retries=0, **params
        )
        latency_ms = (self._clock() - started) * 1000.0
        usage = getattr(response, "usage", None)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        text = response.choices[0].message.content or ""
        # litellm prices the response while it logs the call; compute only what it could not price.
        priced = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        return Completion(
            text=text,
            model=model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=float(priced) if priced is not None else _cost(model, tokens_in, tokens_out),
            latency_ms=latency_ms,
        )
