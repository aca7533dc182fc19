"""Run one task: call the agent, and describe every step and the outcome as event records.

The records returned here are plain dicts shaped like the Avro contract (AgentOutput, TaskResult);
the caller only encodes and sends them. A model failure is data (a failed step and a failed result),
not an exception: only bugs escape from `run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.clock import now_ms
from agents.llm import LLM
from agents.prompt_chooser import PromptChooser

__all__ = ["MemorySource", "TaskRun", "TaskRunner"]

Record = dict[str, Any]


_ROLE_PROMPTS: dict[str, str] = {
    "planning": "You are the planner. Break the task into small, ordered steps.",
    "coding": "You are the coder. Propose the smallest correct change, with a test.",
    "research": "You are the researcher. Find what is known and cite where it comes from.",
    "review": "You are the reviewer. Point out defects and score the work from 0 to 10.",
    "testing": "You are the tester. List the cases that would catch this breaking.",
    "documentation": "You are the documenter. Explain what it does and why, briefly.",
}
_AGENT_FOR: dict[str, str] = {
    "planning": "planner",
    "coding": "coder",
    "research": "researcher",
    "review": "reviewer",
    "testing": "tester",
    "documentation": "documenter",
}


@dataclass
class TaskRun:
    """Everything one task produced: an AgentOutput per call and one TaskResult."""

    outputs: list[Record] = field(default_factory=list)
    result: Record = field(default_factory=dict)


class MemorySource(Protocol):
    """Memory hook (issue 5): memories for a task, each {"id", "text", ...}; never raises."""

    async def recall(self, task: Record) -> list[Record]: ...


class TaskRunner:
    """Runs a TaskRequested record with one agent chosen by its capability (the `fast` pattern)."""

    def __init__(self, llm: LLM, model: str, clock: Callable[[], int] = now_ms,
                 memory: MemorySource | None = None, prompts: PromptChooser | None = None) -> None:
        self.llm = llm
        self.model = model
        self._now = clock
        self.memory = memory
        self.prompts = prompts  # prompt registry / A/B experiments (issue 4); None: built-in prompts

    async def run(self, task: Record) -> TaskRun:
        """The task's run, with recalled memories (if a memory source is set) given to the agent."""
        memories = await self.memory.recall(task) if self.memory is not None else []
        run = await self._run(task, _memory_messages(memories))
        return _record_memories(run, memories) if self.memory is not None else run

    async def _run(self, task: Record, context: list[Record]) -> TaskRun:
        capability = task.get("capability") or "coding"
        agent = _AGENT_FOR.get(capability, "coder")
        system, prompt_meta = _ROLE_PROMPTS.get(capability, _ROLE_PROMPTS["coding"]), {}
        chosen = await self.prompts.choose(task) if self.prompts is not None else None
        if chosen is not None:  # a registry prompt: record experiment, variant and version on the output
            system, prompt_meta = chosen.system, chosen.metadata
        messages = [
            {"role": "system", "content": system},
            *context,
            {"role": "user", "content": task["description"]},
        ]
        step: Record = {
            "output_id": f"{task['task_id']}:1:1",
            "task_id": task["task_id"],
            "agent": agent,
            "step": 1,
            "model": self.model,
            "attempt": 1,
            "metadata": {"pattern": task.get("pattern") or "fast", **prompt_meta},
        }
        try:
            completion = await self.llm.complete(self.model, messages)
        except Exception as exc:  # any provider failure becomes a failed step, not a crash
            error = f"{type(exc).__name__}: {exc}"
            output = {**step, "status": "failed", "output": "", "error": error, "created_at": self._now()}
            return TaskRun([output], self._result(task, "failed", "", [output], error))
        output = {
            **step,
            "status": "ok",
            "output": completion.text,
            "tokens_in": completion.tokens_in,
            "tokens_out": completion.tokens_out,
            "cost_usd": completion.cost_usd,
            "latency_ms": completion.latency_ms,
            "error": None,
            "created_at": self._now(),
        }
        return TaskRun([output], self._result(task, "ok", completion.text, [output], None))

    def _result(self, task: Record, status: str, text: str, outputs: list[Record], error: str | None) -> Record:
        return {
            "task_id": task["task_id"],
            "status": status,
            "output": text,
            "model": outputs[-1]["model"],
            "cost_usd": sum(o.get("cost_usd", 0.0) for o in outputs),
            "latency_ms": sum(o.get("latency_ms", 0.0) for o in outputs),
            "steps": len(outputs),
            "tokens_in": sum(o.get("tokens_in", 0) for o in outputs),
            "tokens_out": sum(o.get("tokens_out", 0) for o in outputs),
            "tenant": task.get("tenant") or "default",
            "error": error,
            "metadata": {**(task.get("metadata") or {}), "pattern": task.get("pattern") or "fast"},
            "created_at": self._now(),
        }


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
