"""What the agents side tells whoever watches it: each model call, each budget event, calls in flight,
and the spans of every agent step and model call.

agents/ knows nothing of Prometheus, exporters or the environment: the runner calls a `RunObserver`
(by default one that does nothing, with OpenTelemetry's no-op tracer) and the process that runs it
(streams/observability/) passes one that counts and traces. Spans are made with the OpenTelemetry
API only, named and attributed by the GenAI semantic conventions (`invoke_agent {agent}`, `chat {model}`).
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.trace import NoOpTracer, Tracer

__all__ = ["BUDGET_EVENTS", "ModelCall", "RunObserver", "provider_of"]

BUDGET_EVENTS = ("degraded", "exceeded")  # routed to the cheapest capable model; no capable model affordable


@dataclass(frozen=True)
class ModelCall:
    """One model called (through litellm's retries), answered or not.

    `outcome` is "ok" or why it failed (timeout, rate_limited, server_error, or the exception's name);
    a failed call has no tokens and costs nothing."""

    model: str
    agent: str
    tenant: str
    outcome: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_s: float


def provider_of(model: str) -> str:
    """The provider part of a litellm model name (`openai/gpt-4o` -> `openai`), for gen_ai.provider.name."""
    return model.split("/", 1)[0] if "/" in model else "unknown"


class RunObserver:
    """The hooks the step path calls; this base does nothing (a runner nobody watches)."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        self.tracer: Tracer = tracer if tracer is not None else NoOpTracer()

    def model_call(self, call: ModelCall) -> None:
        """After every model call, answered or failed."""

    def budget_event(self, tenant: str, event: str) -> None:
        """A step degraded to the cheapest model, or ended because no capable model was affordable."""

    def calls_in_flight(self, delta: int) -> None:
        """A step starts calling models (+1) or is done with them (-1)."""
