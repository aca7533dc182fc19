"""Run one task with the swarm pattern it asks for, and describe every step and the outcome.

- fast: one agent, the one for the task's capability.
- balanced: planner -> coder -> reviewer, each given the previous steps' outputs.
- quality: N candidates of the capability's agent in parallel, then the model judge
  (agents/judging.py) scores them in one more step and the best is the result; each candidate's
  AgentOutput carries its score in [0, 1] ("" when the judge's answer gave it none).

The records returned are plain dicts shaped like the Avro contract (AgentOutput, TaskResult); the
caller only encodes and sends them. A model failure is data (a failed step and result), not an
exception: only bugs escape from `run`. The task is redacted (description and metadata) as it comes in,
before memory recall; model answers are redacted as they come back (agents/swarm.py).
A task that asks for something unknown (agents/validation.py) is answered `rejected` before
anything else happens: no memory recalled, no model called, nothing charged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from agents.budget import BudgetLedger, MemorySpendStore, TaskBudget
from agents.clock import now_ms
from agents.judging import Candidate, ModelJudge
from agents.observer import RunObserver
from agents.prompt_chooser import PromptChooser
from agents.redaction import redact, redact_task
from agents.registry import AgentRegistry, AgentSpec
from agents.routing import ModelRouter
from agents.swarm import StepCache, StepCaller, StepContext, StepOutcome
from agents.tools import ToolKit
from agents.tools.plans import PlanRunner
from agents.validation import Problem, describe, task_problems
from schemas.events import DEFAULT_CAPABILITY, DEFAULT_PATTERN, Record, tenant_of
from schemas.provenance import DESCRIPTION_DIGEST, SIGNATURE, description_digest

__all__ = ["RECORDED_MEMORIES", "MemorySource", "TaskRun", "TaskRunner", "recorded_memory_ids"]

RECORDED_MEMORIES = "replay.memory_ids"
"""Task metadata `replay.memory_ids`: the memory ids production recalled for the task (comma-separated, "" for
none). A replay sets it so the task is given those memories again, not what a search finds today."""


def recorded_memory_ids(task: Record) -> list[str] | None:
    """The memory ids a replayed task must recall (possibly none), or None for a task that searches as usual."""
    value = (task.get("metadata") or {}).get(RECORDED_MEMORIES)
    return None if value is None else [i for i in str(value).split(",") if i]


@dataclass
class TaskRun:
    """Everything one task produced: an AgentOutput per call and one TaskResult."""

    outputs: list[Record] = field(default_factory=list)
    result: Record = field(default_factory=dict)


class MemorySource(Protocol):
    """Memory hook (issue 5): memories for a task, each {"id", "text", ...}; never raises."""

    async def recall(self, task: Record) -> list[Record]: ...


def _user(task: Record, prior: list[tuple[str, str]]) -> str:
    text = task["description"]
    for agent, output in prior:
        text += f"\n\n### Output of the {agent}\n{output}"
    return text


class TaskRunner:
    """Runs TaskRequested records through the agent registry, the model router and the budgets."""

    def __init__(self, registry: AgentRegistry, router: ModelRouter, ledger: BudgetLedger | None = None,
                 quality_candidates: int = 3, max_in_flight: int = 1024, clock: Callable[[], int] = now_ms,
                 memory: MemorySource | None = None, pinned_model: str | None = None,
                 prompts: PromptChooser | None = None, observer: RunObserver | None = None,
                 sequential_candidates: bool = False, tools: ToolKit | None = None) -> None:
        registry.require("planning", "coding", "review", "judging")
        self.registry, self.router = registry, router
        self.ledger = ledger or BudgetLedger(MemorySpendStore())
        self.quality_candidates = quality_candidates
        self.sequential_candidates = sequential_candidates  # the baseline `make bench` measures parallelism against
        self.memory = memory
        self.prompts = prompts  # prompt registry / A/B experiments (issue 4); None: the agents' own prompts
        self.steps = StepCaller(router, self.ledger, registry.specs, max_in_flight, clock, pinned_model, observer)
        self.judge = ModelJudge(self.steps, registry.for_capability("judging"))  # the quality pattern's judge
        # tasks that name a plan (issue 15): agents with tools over MCP; None: this runner has no tools
        self.tools = tools
        self.plans = PlanRunner(tools.config, tools.executor, registry, self.steps) if tools is not None else None
        self._now = clock
        # Lite mode (issue 14): tenant -> the scope of the lite mode in force for it ("global", "tenant"),
        # None when there is none; the worker sets it to what the control topic says.
        self.lite_mode: Callable[[str], str | None] = _never_lite

    async def run(self, task: Record, cache: StepCache | None = None) -> TaskRun:
        """The task's run, with recalled memories (if a memory source is set) given to every agent;
        steps found in `cache` (an earlier attempt's answers) are reused, not called and paid again.
        The description and metadata are redacted first: recall, the models and every record see them so.
        A task with invalid fields gets a `rejected` result and no outputs."""
        task = redact_task(task)
        problems = await self._problems(task)
        if problems:
            return TaskRun([], self._rejected(task, problems))
        recall = self.memory is not None and self._wants_memory(task)
        memories = await self.memory.recall(task) if recall and self.memory is not None else []
        run = await self._run(task, _memory_messages(memories), cache)
        return _record_memories(run, memories) if recall else run

    def _wants_memory(self, task: Record) -> bool:
        """Recall only when an agent of the task's steps takes memories (`memory = false` in its spec: the
        search, about 5-10 ms of a worker's CPU, is skipped). The quality pattern's judge follows its candidates."""
        capability = task.get("capability") or DEFAULT_CAPABILITY
        steps = ("planning", capability, "review") if (task.get("pattern") or DEFAULT_PATTERN) == "balanced" \
            else (capability,)
        return any(self.registry.for_capability(c).memory for c in steps)

    async def _run(self, task: Record, context: list[Record], cache: StepCache | None = None) -> TaskRun:
        pattern = task.get("pattern") or DEFAULT_PATTERN
        lite = self.lite_mode(tenant_of(task))
        if lite and pattern == "quality":  # lite mode: one cheapest-model answer instead of N and a judge
            pattern = "fast"
        ctx = StepContext(task, TaskBudget(task.get("budget_usd")), pattern, context, cache=cache, lite=lite)
        capability = task.get("capability") or DEFAULT_CAPABILITY
        chosen = await self.prompts.choose(task) if self.prompts is not None else None
        if chosen is not None:  # a registry prompt for the task's capability: its steps use it and record it
            ctx.prompt = (capability, chosen.system, dict(chosen.metadata))
        if ctx.task.get("plan") and self.plans is not None:
            outcomes, final = await self.plans.run(ctx, ctx.task["plan"])
        elif pattern == "balanced":
            outcomes, final = await self._balanced(ctx)
        elif pattern == "quality":
            outcomes, final = await self._quality(ctx, capability)
        else:
            out = await self._call(ctx, self.registry.for_capability(capability), capability, 1, task["description"])
            outcomes, final = [out], out
        return TaskRun([o.record for o in outcomes], self._result(ctx, outcomes, final))

    async def _problems(self, task: Record) -> list[Problem]:
        """What makes the task unrunnable; a capability may be a prompt the registry holds (asked only
        when the capability is not a built-in one)."""
        problems = task_problems(task)
        capability = task.get("capability")
        if (self.prompts is not None and any(p.field == "capability" for p in problems)
                and await self.prompts.has_prompt(str(capability), task.get("created_at"))):
            problems = task_problems(task, prompts=(str(capability),))
        plan = task.get("plan")
        if plan and (self.plans is None or not self.plans.has(plan)):
            allowed = (f"one of {', '.join(self.plans.config.plans)} (absent means no plan)" if self.plans is not None
                       else "none: this worker runs no tools (AGENTSTREAM_TOOLS_ENABLED=false)")
            problems.append(Problem("plan", plan, allowed))
        return problems

    def _rejected(self, task: Record, problems: list[Problem]) -> Record:
        error = redact(f"invalid task: {describe(problems)}")
        meta = {**(task.get("metadata") or {}), "rejected_fields": ",".join(p.field for p in problems)}
        return {"task_id": task["task_id"], "status": "rejected", "output": error, "model": "", "cost_usd": 0.0,
                "latency_ms": 0.0, "steps": 0, "tokens_in": 0, "tokens_out": 0, "tenant": tenant_of(task),
                "error": error, "metadata": meta, "created_at": self._now()}

    async def _call(self, ctx: StepContext, spec: AgentSpec, capability: str, step: int, user: str,
                    **meta: str) -> StepOutcome:
        return await self.steps.ask(ctx, spec, capability, step, user, meta)

    async def _balanced(self, ctx: StepContext) -> tuple[list[StepOutcome], StepOutcome]:
        done: list[StepOutcome] = []
        prior: list[tuple[str, str]] = []
        for step, capability in enumerate(("planning", "coding", "review"), 1):
            spec = self.registry.for_capability(capability)
            out = await self._call(ctx, spec, capability, step, _user(ctx.task, prior))
            done.append(out)
            if out.text is None:
                return done, out
            prior.append((spec.name, out.text))
        coder, reviewer = done[1], done[2]
        final = StepOutcome(reviewer.record, f"{coder.text}\n\n### Review\n{reviewer.text}")
        return done, final

    async def _quality(self, ctx: StepContext, capability: str) -> tuple[list[StepOutcome], StepOutcome]:
        n = self.quality_candidates
        spec = self.registry.for_capability(capability)
        def candidate(k: int) -> Awaitable[StepOutcome]:
            return self._call(ctx, spec, capability, k,
                              f"{ctx.task['description']}\n\n(Candidate {k} of {n}: take an approach of your own.)",
                              candidate=str(k))
        if self.sequential_candidates:
            candidates = [await candidate(k) for k in range(1, n + 1)]
        else:
            candidates = list(await asyncio.gather(*(candidate(k) for k in range(1, n + 1))))
        ok = [c for c in candidates if c.text is not None]
        blocked = next((c for c in candidates if c.status == "budget_exceeded"), None)
        if blocked is not None or not ok:
            return candidates, blocked or candidates[0]
        judgement = await self.judge.judge(ctx, [Candidate(str(c.record["step"]), c.text or "") for c in ok],
                                           step=n + 1)
        judge = judgement.call
        if judge is None:  # every answer was empty: nothing to ask, the first one stands
            return candidates, ok[0]
        if judge.text is None:
            return [*candidates, judge], judge
        rank: dict[int, float] = {}  # step -> score; an unparsed verdict ranks below every score
        for c, verdict in zip(ok, judgement.verdicts, strict=True):
            c.record["metadata"]["score"] = f"{verdict.score:g}" if verdict.parsed else ""
            rank[c.record["step"]] = verdict.score if verdict.parsed else -1.0
        best = max(ok, key=lambda c: (rank[c.record["step"]], -c.record["step"]))
        best.record["metadata"]["winner"] = "true"
        judge.record["metadata"]["scores"] = ",".join(f"{k}:{r:g}" for k, r in sorted(rank.items()) if r >= 0)
        if unparsed := [str(k) for k, r in sorted(rank.items()) if r < 0]:
            judge.record["metadata"]["unparsed"] = ",".join(unparsed)
        return [*candidates, judge], StepOutcome(best.record, best.text)

    def _result(self, ctx: StepContext, outcomes: list[StepOutcome], final: StepOutcome) -> Record:
        records = [o.record for o in outcomes]
        failed = next((o for o in outcomes if o.text is None and o.status == "budget_exceeded"), None)
        if failed is None and final.text is None:
            failed = final
        status = "ok" if failed is None else ("budget_exceeded" if failed.status == "budget_exceeded" else "failed")
        error = None if failed is None else failed.record.get("error")
        meta = {**(ctx.task.get("metadata") or {}), "pattern": ctx.pattern, "optimization": ctx.optimization,
                "agents": ",".join(r["agent"] for r in records),
                "tenant_spend_usd": f"{self.ledger.tenant_spent(ctx.tenant):.9f}"}
        if ctx.budget.limit is not None:
            meta["budget_usd"] = f"{ctx.budget.limit:g}"
        if ctx.lite:
            meta["lite_mode"] = ctx.lite
            meta["requested_pattern"] = ctx.task.get("pattern") or DEFAULT_PATTERN
        if ctx.task.get("plan"):
            meta["plan"] = ctx.task["plan"]
        if SIGNATURE in meta:  # a signed task (schemas/provenance.py): say which text was run, whatever it claims
            meta[DESCRIPTION_DIGEST] = description_digest(ctx.task["description"])
        if "winner" in final.record["metadata"]:
            meta["winner_step"] = str(final.record["step"])
        meta.update(_prompt_used(records))
        return {
            "task_id": ctx.task["task_id"],
            "status": status,
            "output": final.text or (f"task ended: {error}" if error else ""),
            "model": final.record.get("model", ""),
            "cost_usd": sum(r.get("cost_usd", 0.0) for r in records),
            "latency_ms": _elapsed(ctx.pattern, records),
            "steps": len(records),
            "tokens_in": sum(r.get("tokens_in", 0) for r in records),
            "tokens_out": sum(r.get("tokens_out", 0) for r in records),
            "tenant": ctx.tenant,
            "error": error,
            "metadata": meta,
            "created_at": self._now(),
        }


def _never_lite(_tenant: str) -> str | None:
    return None


_PROMPT_FIELDS = ("prompt", "prompt_version", "pinned", "experiment", "variant")


def _prompt_used(records: list[Record]) -> dict[str, str]:
    """The registry prompt some step ran with, so a result (and a replay of it) says which version answered."""
    used = next((r["metadata"] for r in records if "prompt_version" in r.get("metadata", {})), {})
    return {k: used[k] for k in _PROMPT_FIELDS if k in used}


def _elapsed(pattern: str, records: list[Record]) -> float:
    """Model time on the task's critical path: parallel candidates count once (the slowest)."""
    latencies = [r.get("latency_ms", 0.0) for r in records]
    if pattern == "quality" and len(latencies) > 1:
        return max(latencies[:-1]) + latencies[-1]
    return sum(latencies)


# --- memory hook (issue 5): memories become one context message; their ids go on the records ---

def _memory_messages(memories: list[Record]) -> list[Record]:
    if not memories:
        return []
    lines = "\n".join(f"- [{m['id']}] {' '.join(str(m['text']).split())[:400]}" for m in memories)
    return [{"role": "system", "content": f"Relevant memory from earlier work (use it if it helps):\n{lines}"}]


def _record_memories(run: TaskRun, memories: list[Record]) -> TaskRun:
    ids = ",".join(str(m["id"]) for m in memories)
    for output in run.outputs:
        output["metadata"] = {**output.get("metadata", {}), "memory_ids": ids}
    run.result["metadata"] = {**run.result.get("metadata", {}), "memories_used": str(len(memories))}
    return run
