"""Running a task as a coordination plan: agents with tools over MCP, in sequence, in parallel, or as a DAG.

Each plan step is one agent (the registry's agent for the step's capability) offered the tools of its
servers as function schemas (litellm tool calling). Its model's tool calls are executed (agents/tools/calls.py)
and their results given back, round after round, until it answers or `max_rounds` is reached (the last round
offers no tools, so it must answer). Every model round is a step of its own (an AgentOutput), numbered
`plan step index * max_rounds + round`, so a task run again numbers its steps, and its tool calls, the same.

sequence: each step sees the answers before it; parallel: the steps run at once, then the aggregator agent
synthesises their answers; dag: a step starts once the steps it depends_on are done, and sees their answers.
The plan has a deadline (`timeout_s`): past it, the task fails with what was done so far.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agents.registry import AgentRegistry
from agents.swarm import StepCaller, StepContext, StepOutcome
from agents.tools.calls import ToolExecutor
from agents.tools.config import PlanSpec, PlanStep, ToolConfig

__all__ = ["PlanRunner"]


class PlanRunner:
    """Runs plans by name for the task runner."""

    def __init__(self, config: ToolConfig, executor: ToolExecutor, registry: AgentRegistry, steps: StepCaller) -> None:
        self.config, self.executor, self.registry, self.steps = config, executor, registry, steps

    def has(self, plan: str) -> bool:
        return plan in self.config.plans

    async def run(self, ctx: StepContext, name: str) -> tuple[list[StepOutcome], StepOutcome]:
        """The plan's outcomes (every model round) and the final one (the answer the task gives)."""
        plan = self.config.plans[name]
        done: list[StepOutcome] = []
        try:
            final = await asyncio.wait_for(self._run(ctx, plan, done), plan.timeout_s)
        except TimeoutError:
            return done, self._timed_out(ctx, plan, done)
        return sorted(done, key=lambda o: o.record["step"]), final

    async def _run(self, ctx: StepContext, plan: PlanSpec, done: list[StepOutcome]) -> StepOutcome:
        answers: dict[str, str] = {}
        last: StepOutcome | None = None
        for wave in plan.ordered():
            finals = await asyncio.gather(*(self._agent(ctx, plan, step, self._prior(plan, step, answers), done)
                                            for step in wave))
            for step, out in zip(wave, finals, strict=True):
                if out.text is None:
                    return out  # a step that failed ends the plan: its failure is the task's
                answers[step.name] = out.text
                last = out
        assert last is not None
        if plan.kind != "parallel":
            return last
        prior = [(s.name, answers[s.name]) for s in plan.steps]
        aggregator = PlanStep("aggregate", plan.aggregator or "research")
        return await self._agent(ctx, plan, aggregator, prior, done, index=len(plan.steps), offer_tools=False)

    @staticmethod
    def _prior(plan: PlanSpec, step: PlanStep, answers: dict[str, str]) -> list[tuple[str, str]]:
        if plan.kind == "sequence":
            return list(answers.items())
        if plan.kind == "dag":
            return [(d, answers[d]) for d in step.depends_on]
        return []

    async def _agent(self, ctx: StepContext, plan: PlanSpec, step: PlanStep, prior: list[tuple[str, str]],
                     done: list[StepOutcome], index: int | None = None, offer_tools: bool = True) -> StepOutcome:
        """One plan step's agent: model rounds with tool calls until it answers."""
        index = plan.steps.index(step) if index is None else index
        spec = self.registry.for_capability(step.capability)
        user = f"Plan step: {step.name}\n\n{ctx.task['description']}"
        for name, answer in prior:
            user += f"\n\n### Output of step {name}\n{answer}"
        messages: list[dict[str, Any]] = [{"role": "system", "content": spec.prompt}, *ctx.context,
                                          {"role": "user", "content": user}]
        servers = self.config.servers_for(step) if offer_tools else []
        tools = self.executor.pool.function_schemas(servers) if servers else None
        meta = {"role": step.capability, "plan": plan.name, "plan_step": step.name}
        out: StepOutcome | None = None
        for rnd in range(1, plan.max_rounds + 1):
            number = index * plan.max_rounds + rnd
            offered = tools if rnd < plan.max_rounds else None
            out = await self.steps.step(ctx, spec, step.capability, number, messages, {**meta, "round": str(rnd)},
                                        offered)
            done.append(out)
            calls = json.loads(out.record["metadata"].get("tool_calls", "[]")) if out.text is not None else []
            if not calls:
                return out
            messages.append({"role": "assistant", "content": out.text or None, "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls]})
            results = await asyncio.gather(*(
                self.executor.execute(ctx.task, number, i, c["name"], c["arguments"], plan.call_timeout_s, plan.name)
                for i, c in enumerate(calls)))
            messages += [{"role": "tool", "tool_call_id": c["id"], "content": r.text}
                         for c, r in zip(calls, results, strict=True)]
        assert out is not None
        return out

    def _timed_out(self, ctx: StepContext, plan: PlanSpec, done: list[StepOutcome]) -> StepOutcome:
        error = f"plan {plan.name!r} did not finish within {plan.timeout_s:g} s"
        step = max((o.record["step"] for o in done), default=0) + 1
        record = {"output_id": f"{ctx.task['task_id']}:{step}:1", "task_id": ctx.task["task_id"], "agent": "plan",
                  "step": step, "model": "", "attempt": 1, "status": "timeout", "output": "", "latency_ms": 0.0,
                  "error": error, "metadata": {"pattern": ctx.pattern, "optimization": ctx.optimization,
                                               "plan": plan.name}, "created_at": self.steps._now()}
        return StepOutcome(record, None, "timeout")
