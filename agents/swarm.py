"""One agent step: pick the chain of models, reserve budget, call, settle, and describe the step.

Bounded by the agent's own concurrency limit and a global limit on calls in flight per worker.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.budget import BudgetLedger, Reservation, TaskBudget
from agents.models import ModelInfo
from agents.observer import ModelCall, RunObserver
from agents.redaction import redact
from agents.registry import AgentSpec
from agents.routing import Attempted, ChainFailed, ModelRouter, order_models
from schemas.events import DEFAULT_OPTIMIZATION, Record, tenant_of

__all__ = ["RECORDED_MODEL", "StepCache", "StepCaller", "StepContext", "StepOutcome", "recorded_model"]

RECORDED_MODEL = "replay.model."
"""Task metadata `replay.model.<step>`: the model that step answered with when the task first ran (a replay
without a model override sets it, so each step runs on production's model, not on today's routing)."""


def recorded_model(task: Record, step: int) -> str | None:
    """The model a replayed task's step is to use (its recorded one), if the task says."""
    return (task.get("metadata") or {}).get(f"{RECORDED_MODEL}{step}")


class StepCache(Protocol):
    """One task's answered model calls, kept durably by the caller, by (step, candidate): a task run
    again after a crash reuses them instead of paying for them again."""

    def get(self, step: int, candidate: str) -> Record | None: ...

    def put(self, step: int, candidate: str, record: Record) -> None: ...


@dataclass
class StepContext:
    """What every step of one task shares: the task, its budget and its objective."""

    task: Record
    budget: TaskBudget
    pattern: str
    context: list[Record] = field(default_factory=list)  # extra messages for every step (memories)
    prompt: tuple[str, str, dict[str, str]] | None = None  # (capability, system prompt, metadata) from issue 4
    cache: StepCache | None = None  # answers of an earlier attempt of this task (issue 11)
    lite: str | None = None  # lite mode in force for the task (issue 14): its scope, global or tenant

    @property
    def tenant(self) -> str:
        return tenant_of(self.task)

    @property
    def optimization(self) -> str:
        return self.task.get("optimization") or DEFAULT_OPTIMIZATION


@dataclass
class StepOutcome:
    """A step's AgentOutput (a contract-shaped dict) and, when it answered, its text."""

    record: Record
    text: str | None = None
    status: str = "ok"
    extra: dict[str, str] = field(default_factory=dict)


def _estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """An upper estimate of prompt tokens: about 3 characters a token, plus framing."""
    return sum(len(str(m.get("content") or "")) for m in messages) // 3 + 8 * len(messages) + 16


class StepCaller:
    """Runs agent steps through the router under budgets and concurrency limits."""

    def __init__(self, router: ModelRouter, ledger: BudgetLedger, specs: tuple[AgentSpec, ...],
                 max_in_flight: int, clock: Callable[[], int], pinned_model: str | None = None,
                 observer: RunObserver | None = None) -> None:
        self.router, self.ledger, self._now = router, ledger, clock
        self.observer = observer or RunObserver()
        self.pinned_model = pinned_model  # every step tries it first (a replay's model override)
        self._global = asyncio.Semaphore(max_in_flight)
        self._per_agent = {s.name: asyncio.Semaphore(s.concurrency) for s in specs}
        self.in_flight = 0
        self.peak_in_flight = 0

    def _price(self, spec: AgentSpec, model: ModelInfo, tokens_in: int, tokens_out: int) -> float:
        own = spec.price(tokens_in, tokens_out)
        return model.cost(tokens_in, tokens_out) if own is None else own

    async def ask(self, ctx: StepContext, spec: AgentSpec, capability: str, step: int, user: str,
                  meta: dict[str, str]) -> StepOutcome:
        """One step asking `user` of the agent: its system prompt (or the registry prompt the task chose
        for this capability, recorded on the step), the task's context messages, then `user`."""
        system, prompt_meta = spec.prompt, {}
        if ctx.prompt is not None and ctx.prompt[0] == capability:
            system, prompt_meta = ctx.prompt[1], ctx.prompt[2]
        context = ctx.context if spec.memory else []  # an agent whose spec says memory adds nothing gets none
        messages = [{"role": "system", "content": system}, *context, {"role": "user", "content": user}]
        return await self.step(ctx, spec, capability, step, messages, {"role": capability, **meta, **prompt_meta})

    async def step(self, ctx: StepContext, spec: AgentSpec, capability: str, step: int,
                   messages: list[dict[str, Any]], meta: dict[str, str],
                   tools: list[dict[str, Any]] | None = None) -> StepOutcome:
        """One step, in an `invoke_agent {agent}` span (GenAI conventions) that ends with what it cost.
        `tools` are offered to the model; the calls it asks for are on the record (metadata `tool_calls`)."""
        with self.observer.tracer.start_as_current_span(f"invoke_agent {spec.name}", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": spec.name,
                "agentstream.task_id": ctx.task["task_id"], "agentstream.tenant": ctx.tenant,
                "agentstream.step": step, "agentstream.capability": capability}) as span:
            out = await self._step(ctx, spec, capability, step, messages, meta, tools)
            if span.is_recording():
                span.set_attributes(_step_attributes(out.record))
            return out

    async def _step(self, ctx: StepContext, spec: AgentSpec, capability: str, step: int,
                    messages: list[dict[str, Any]], meta: dict[str, str],
                    tools: list[dict[str, Any]] | None = None) -> StepOutcome:
        candidate = meta.get("candidate", "")
        kept = ctx.cache.get(step, candidate) if ctx.cache is not None else None
        if kept is not None:  # answered by an earlier attempt: paid (and charged to the tenant) then
            record = copy.deepcopy(kept)
            record["metadata"]["reused"] = "true"
            ctx.budget.spent += record.get("cost_usd", 0.0)
            return StepOutcome(record, record["output"])
        messages = [{**m, "content": redact(str(m.get("content") or ""))} for m in messages]
        chain = self.router.chain(capability, ctx.optimization, spec.context_window, spec.models)
        degraded = self.ledger.should_degrade(ctx.tenant, ctx.budget)
        if degraded:
            self.observer.budget_event(ctx.tenant, "degraded")
        if degraded or ctx.lite:
            chain = order_models(chain, "cost", self.router.latency_of)
        elif (pin := self.pinned_model or recorded_model(ctx.task, step)) in self.router.by_name:
            pinned = self.router.by_name[pin]
            chain = [pinned, *(m for m in chain if m is not pinned)]
        est_in = _estimate_tokens(messages)
        held: dict[str, Reservation] = {}

        def admit(model: ModelInfo) -> bool:
            reservation = self.ledger.reserve(ctx.tenant, ctx.budget,
                                              self._price(spec, model, est_in, spec.max_output_tokens))
            if reservation is not None:
                held[model.name] = reservation
            return reservation is not None

        def settle(model: ModelInfo, tokens_in: int, tokens_out: int) -> float:
            cost = self._price(spec, model, tokens_in, tokens_out) if tokens_in or tokens_out else 0.0
            reservation = held.pop(model.name, None)
            if reservation is not None:
                self.ledger.settle(reservation, cost)
            return cost

        base: Record = {
            "output_id": f"{ctx.task['task_id']}:{step}:1", "task_id": ctx.task["task_id"], "agent": spec.name,
            "step": step, "tenant": ctx.tenant,
            "metadata": {"pattern": ctx.pattern, "optimization": ctx.optimization, **meta},
        }
        if degraded:
            base["metadata"]["degraded"] = "cheapest capable model: budget share reached"
        if ctx.lite:
            base["metadata"]["lite_mode"] = ctx.lite
        async with self._per_agent[spec.name], self._global:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.observer.calls_in_flight(1)
            base["metadata"]["in_flight"] = str(self.in_flight)
            try:
                done = await self.router.complete(chain, messages, spec.max_output_tokens, admit=admit, settle=settle,
                                                  tools=tools)
            except ChainFailed as exc:
                self._observe(spec, ctx.tenant, exc.failures)
                return self._failed(base, chain, exc)
            finally:
                self.in_flight -= 1
                self.observer.calls_in_flight(-1)
        cost = self._price(spec, self.router.by_name[done.model], done.tokens_in, done.tokens_out)
        answered = ModelCall(done.model, spec.name, ctx.tenant, "ok", done.tokens_in, done.tokens_out, cost,
                             done.latency_ms / 1000.0)
        self._observe(spec, ctx.tenant, done.failures, answered)
        text = redact(done.text)
        base["metadata"].update(_failure_meta(done.failures))
        if done.tool_calls:  # kept with the answer: a task run again makes the same calls (same call ids)
            base["metadata"]["tool_calls"] = json.dumps(list(done.tool_calls))
        record = {**base, "model": done.model, "attempt": len(done.failures) + 1, "status": "ok", "output": text,
                  "tokens_in": done.tokens_in, "tokens_out": done.tokens_out, "cost_usd": cost,
                  "latency_ms": done.latency_ms, "error": None, "created_at": self._now()}
        if ctx.cache is not None:  # after the settlement: the spend is recorded before the answer is kept
            ctx.cache.put(step, candidate, record)
        return StepOutcome(record, text)

    def _observe(self, spec: AgentSpec, tenant: str, failures: tuple[Attempted, ...],
                 answered: ModelCall | None = None) -> None:
        """Tell the observer of every model called (a failed one costs nothing) and of a budget that ended the step."""
        for f in failures:
            if f.kind == "unaffordable":
                continue
            self.observer.model_call(ModelCall(f.model, spec.name, tenant, f.kind, 0, 0, 0.0, f.latency_ms / 1000.0))
        if answered is not None:
            self.observer.model_call(answered)
        elif any(f.kind == "unaffordable" for f in failures):
            self.observer.budget_event(tenant, "exceeded")

    def _failed(self, base: Record, chain: list[ModelInfo], exc: ChainFailed) -> StepOutcome:
        if not chain:
            status, error = "failed", "no model in the table is capable of this step"
        elif exc.kind == "unaffordable":
            status, error = "budget_exceeded", f"budget exceeded: no capable model is affordable ({exc})"
        else:
            status = "timeout" if exc.kind == "timeout" else "failed"
            error = redact(str(exc))
        base["metadata"].update(_failure_meta(exc.failures))
        record = {**base, "model": exc.failures[-1].model if exc.failures else "", "attempt": len(exc.failures) or 1,
                  "status": status, "output": "", "latency_ms": sum(f.latency_ms for f in exc.failures),
                  "error": error, "created_at": self._now()}
        return StepOutcome(record, None, status)


def _step_attributes(record: Record) -> dict[str, Any]:
    """The GenAI and agentstream attributes of a finished step, from its AgentOutput."""
    attributes: dict[str, Any] = {"agentstream.status": record.get("status", ""),
                                  "agentstream.cost_usd": float(record.get("cost_usd", 0.0))}
    if record.get("model"):
        attributes["gen_ai.response.model"] = record["model"]
    if "tokens_in" in record:
        attributes["gen_ai.usage.input_tokens"] = int(record["tokens_in"])
        attributes["gen_ai.usage.output_tokens"] = int(record["tokens_out"])
    if record.get("metadata", {}).get("reused"):
        attributes["agentstream.reused"] = True
    return attributes


def _failure_meta(failures: tuple[Attempted, ...]) -> dict[str, str]:
    if not failures:
        return {}
    return {"failed_models": " | ".join(redact(f.describe()) for f in failures),
            "fallback": "true" if any(f.kind != "unaffordable" for f in failures) else "false"}
