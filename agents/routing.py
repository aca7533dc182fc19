"""Model choice and the call path: order the capable models by the task's objective, then call them
with `litellm.acompletion` (per-call timeout, retries with exponential backoff for 429, 5xx, timeouts
and lost connections), falling back along the chain to the next capable model when one fails.

Not through a `litellm.Router`: the chain order is ours (it depends on each task's `optimization` and
budget, which a Router's static fallback list cannot express), and the Router added about 2 ms of CPU
to every call (its cooldown and routing bookkeeping, measured with litellm 1.110: 5.5 ms a call
against 3.3 ms direct), a third of what a worker spends on an instant-model task. Every failed model
is recorded with why it failed, so the AgentOutput says which model answered and which did not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import litellm
from opentelemetry.trace import NoOpTracer, SpanKind, StatusCode, Tracer

from agents.models import ModelInfo
from agents.observer import provider_of
from agents.redaction import redact

__all__ = ["Attempted", "ChainFailed", "Completion", "ModelRouter", "order_models"]



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
    tool_calls: tuple[dict[str, str], ...] = ()  # {"id", "name", "arguments" (JSON text)} the model asked for


def _tool_calls(message: Any) -> tuple[dict[str, str], ...]:
    """The tool calls of a model's answer, as plain dicts (litellm hands back its own objects)."""
    return tuple({"id": str(c.id), "name": str(c.function.name), "arguments": str(c.function.arguments or "{}")}
                 for c in (getattr(message, "tool_calls", None) or ()))


class ChainFailed(Exception):
    """Every model in the chain failed; `failures` says how each one did."""

    def __init__(self, failures: Sequence[Attempted]) -> None:
        self.failures = tuple(failures)
        kinds = {f.kind for f in failures}
        # A chain that ran into its budget ends for lack of money, whatever else failed before.
        self.kind = "unaffordable" if "unaffordable" in kinds else kinds.pop() if len(kinds) == 1 else "failed"
        super().__init__("; ".join(f.describe() for f in failures) or "no capable model")


def _transient(exc: BaseException) -> bool:
    """Worth trying the same model again: rate limited, a 5xx, a timeout or a lost connection."""
    return _kind(exc) in ("timeout", "rate_limited", "server_error") or isinstance(exc, litellm.APIConnectionError)


def _kind(exc: BaseException) -> str:
    if isinstance(exc, litellm.Timeout | asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, litellm.RateLimitError):
        return "rate_limited"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 500:
        return "server_error"
    return type(exc).__name__


def _pareto(models: list[ModelInfo], latency: Callable[[ModelInfo], float]) -> list[ModelInfo]:
    """Models no other model beats on all of cost, quality and latency at once."""
    def price(m: ModelInfo) -> float:
        return m.input_cost_per_token + m.output_cost_per_token

    def dominated(m: ModelInfo) -> bool:
        return any(
            price(o) <= price(m) and o.quality >= m.quality and latency(o) <= latency(m)
            and (price(o), o.quality, latency(o)) != (price(m), m.quality, latency(m))
            for o in models
        )
    return [m for m in models if not dominated(m)]


def order_models(models: Sequence[ModelInfo], optimization: str,
                 latency: Callable[[ModelInfo], float]) -> list[ModelInfo]:
    """The fallback chain for an objective: best first, every model once.

    balanced: the Pareto front over (cost, quality, latency) first, each model scored by the sum of
    its normalised quality, cheapness and speed; the dominated models follow in the same score order.
    """
    pool = list(models)
    if optimization == "cost":
        return sorted(pool, key=lambda m: (m.input_cost_per_token + m.output_cost_per_token, -m.quality))
    if optimization == "quality":
        return sorted(pool, key=lambda m: (-m.quality, m.input_cost_per_token + m.output_cost_per_token))
    if optimization == "speed":
        return sorted(pool, key=lambda m: (latency(m), -m.quality))

    def norm(values: list[float]) -> Callable[[float], float]:
        lo, hi = min(values), max(values)
        return lambda v: 0.0 if hi == lo else (v - lo) / (hi - lo)
    n_price = norm([m.input_cost_per_token + m.output_cost_per_token for m in pool] or [0.0])
    n_lat = norm([latency(m) for m in pool] or [0.0])
    n_q = norm([m.quality for m in pool] or [0.0])

    def score(m: ModelInfo) -> float:
        cheapness = 1 - n_price(m.input_cost_per_token + m.output_cost_per_token)
        return n_q(m.quality) + cheapness + (1 - n_lat(latency(m)))
    front = set(id(m) for m in _pareto(pool, latency))
    return sorted(pool, key=lambda m: (id(m) not in front, -score(m)))


@dataclass
class ModelRouter:
    """The model table and how each is called; observed latency feeds `speed` routing."""

    models: tuple[ModelInfo, ...]
    timeout_s: float = 60.0
    num_retries: int = 2
    retry_backoff_s: float = 0.5
    clock: Callable[[], float] = time.perf_counter
    tracer: Tracer = field(default_factory=NoOpTracer)  # each model called is a `chat {model}` span
    _observed: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {m.name: m for m in self.models}
        # what litellm is given for each model; max_retries=0: the provider SDK must not retry on its own
        self._params = {m.name: {**m.litellm_params, "model": m.litellm_params.get("model", m.name), "max_retries": 0}
                        for m in self.models}

    def latency_of(self, model: ModelInfo) -> float:
        """Observed latency (ms, moving average); before any call, a prior that grows with quality."""
        return self._observed.get(model.name, 500.0 + 1000.0 * model.quality)

    def capable(self, capability: str, context_window: int = 0, allowed: Sequence[str] = ()) -> list[ModelInfo]:
        return [m for m in self.models if m.can(capability) and m.context_window >= context_window
                and (not allowed or m.name in allowed)]

    def chain(self, capability: str, optimization: str, context_window: int = 0,
              allowed: Sequence[str] = ()) -> list[ModelInfo]:
        return order_models(self.capable(capability, context_window, allowed), optimization, self.latency_of)

    def _observe(self, model: str, latency_ms: float) -> None:
        old = self._observed.get(model)
        self._observed[model] = latency_ms if old is None else 0.8 * old + 0.2 * latency_ms

    async def call(self, model: ModelInfo, messages: list[dict[str, Any]], max_tokens: int | None = None,
                   tools: list[dict[str, Any]] | None = None) -> Completion:
        """One model, retried `num_retries` times on a transient failure; raises what the last try raised.
        `tools`: function schemas the model may call (litellm tool calling); its calls come back on the Completion."""
        started = self.clock()
        params: dict[str, Any] = {**self._params[model.name], "timeout": self.timeout_s}
        if max_tokens:
            params["max_tokens"] = max_tokens
        if tools:
            params["tools"] = tools
        for attempt in range(self.num_retries + 1):
            try:
                response = await litellm.acompletion(messages=messages, **params)
                break
            except Exception as exc:
                if attempt == self.num_retries or not _transient(exc):
                    raise
                await asyncio.sleep(self.retry_backoff_s * 2 ** attempt)
        latency_ms = (self.clock() - started) * 1000.0
        self._observe(model.name, latency_ms)
        usage = getattr(response, "usage", None)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        message = response.choices[0].message
        return Completion(text=message.content or "", model=model.name, tokens_in=tokens_in,
                          tokens_out=tokens_out, cost_usd=model.cost(tokens_in, tokens_out), latency_ms=latency_ms,
                          tool_calls=_tool_calls(message))

    async def complete(self, chain: Sequence[ModelInfo], messages: list[dict[str, Any]],
                       max_tokens: int | None = None, admit: Callable[[ModelInfo], bool] | None = None,
                       settle: Callable[[ModelInfo, int, int], float] | None = None,
                       tools: list[dict[str, Any]] | None = None) -> Completion:
        """Try each model of the chain in turn; the first answer wins and carries the failures before it.

        `admit(model)` may refuse a model (a budget that cannot afford it: kind "unaffordable");
        `settle(model, tokens_in, tokens_out)` is called after every admitted call, answered or not.
        """
        failures: list[Attempted] = []
        for model in chain:
            if admit is not None and not admit(model):
                failures.append(Attempted(model.name, "unaffordable", "the budget cannot afford its estimate", 0.0))
                continue
            done = await self._attempt(model, messages, max_tokens, settle, tools)
            if isinstance(done, Attempted):  # any provider failure moves on to the next model
                failures.append(done)
                continue
            return Completion(done.text, done.model, done.tokens_in, done.tokens_out, done.cost_usd,
                              done.latency_ms, tuple(failures), done.tool_calls)
        raise ChainFailed(failures)

    async def _attempt(self, model: ModelInfo, messages: list[dict[str, Any]], max_tokens: int | None,
                       settle: Callable[[ModelInfo, int, int], float] | None,
                       tools: list[dict[str, Any]] | None = None) -> Completion | Attempted:
        """One admitted model, in a `chat {model}` span (GenAI conventions): its answer, or why it failed."""
        attributes: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider_of(model.name),
                                      "gen_ai.request.model": model.name}
        if max_tokens:
            attributes["gen_ai.request.max_tokens"] = max_tokens
        with self.tracer.start_as_current_span(f"chat {model.name}", kind=SpanKind.CLIENT,
                                               attributes=attributes) as span:
            started = self.clock()
            try:
                done = await (self.call(model, messages, max_tokens, tools) if tools else
                              self.call(model, messages, max_tokens))
            except Exception as exc:  # the caller moves on to the next model
                if settle is not None:
                    settle(model, 0, 0)
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                failed = Attempted(model.name, _kind(exc), f"{type(exc).__name__}: {first_line}",
                                   (self.clock() - started) * 1000.0)
                span.set_attribute("error.type", failed.kind)
                span.set_status(StatusCode.ERROR, redact(failed.error)[:200])
                return failed
            cost = settle(model, done.tokens_in, done.tokens_out) if settle is not None else done.cost_usd
            if span.is_recording():
                span.set_attributes({"gen_ai.response.model": done.model, "gen_ai.usage.input_tokens": done.tokens_in,
                                     "gen_ai.usage.output_tokens": done.tokens_out, "agentstream.cost_usd": cost})
            return done
