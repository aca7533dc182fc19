"""Executing the tool calls a model asks for: once per call id, described as a ToolCall event.

A call's id is `<task identity>:<step>:<index>` (the identity is the task id, `tenant/` before it for a
tenant other than the default: schemas/events.py), the same on every run of the task (the model's answers of an
earlier attempt are reused, so it asks for the same calls). Before calling, the tool-call ledger is asked:
a recorded result (same server, tool and arguments) is given back instead of calling the tool again, so a
task delivered again after a crash does not write twice. In `recorded` mode (a replay) no tool is called
at all: a call the ledger does not hold is answered as a tool error. Every call, made or reused, is one
ToolCall event (arguments redacted; the result's size and digest, never its text).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agents.clock import now_ms
from agents.redaction import redact
from agents.tools.pool import ToolOutcome, ToolPool, split_function_name
from schemas.events import Record, task_identity, tenant_of

__all__ = ["CallLedger", "Recorded", "ToolExecutor", "args_digest", "call_id"]


def call_id(task: Record, step: int, index: int) -> str:
    return f"{task_identity(task)}:{step}:{index}"


def args_digest(server: str, tool: str, args: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([server, tool, args], sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Recorded:
    """A call as the ledger keeps it."""

    call_id: str
    server: str
    tool: str
    args_digest: str
    status: str
    result: str
    latency_ms: float


class CallLedger(Protocol):
    """Where results are kept by call id (PostgreSQL in a worker: sinks/tool_calls.py)."""

    async def get(self, call_id: str) -> Recorded | None: ...

    async def put(self, call: Recorded, task_id: str) -> None: ...


Emit = Callable[[Record], Awaitable[None]]


class ToolExecutor:
    """Runs a model's tool calls through the pool, the ledger first; emits one ToolCall each."""

    def __init__(self, pool: ToolPool, ledger: CallLedger | None = None, emit: Emit | None = None,
                 mode: str = "live", record: bool = True, clock: Callable[[], int] = now_ms) -> None:
        self.pool, self.ledger, self.emit = pool, ledger, emit
        self.mode, self.record = mode, record
        self.called = self.reused = 0
        self._now = clock

    async def execute(self, task: Record, step: int, index: int, function: str, arguments: str,
                      timeout_s: float | None, plan: str | None = None) -> ToolOutcome:
        """The result the model is given for one of its calls (a failure is a result too)."""
        server, tool = split_function_name(function)
        cid = call_id(task, step, index)
        started_ms, started = self._now(), time.perf_counter()
        try:
            args = json.loads(arguments or "{}")
            if not isinstance(args, dict):
                raise ValueError("the arguments are not a JSON object")
        except ValueError as exc:
            outcome, reused = ToolOutcome(f"bad arguments for {function}: {exc}", "error"), False
            args = {}
        else:
            outcome, reused = await self._outcome(task, cid, server, tool, args, timeout_s)
        latency_ms = (time.perf_counter() - started) * 1000.0
        if self.emit is not None:
            await self.emit(self._event(task, cid, step, index, server, tool, args, outcome, reused, latency_ms,
                                        started_ms, plan))
        return outcome

    async def _outcome(self, task: Record, cid: str, server: str, tool: str, args: dict[str, Any],
                       timeout_s: float | None) -> tuple[ToolOutcome, bool]:
        digest = args_digest(server, tool, args)
        kept = await self.ledger.get(cid) if self.ledger is not None else None
        # live and recording: a call recorded with these arguments was made (an earlier attempt): reuse it;
        # live and not recording (a replay with --live-tools): always call again; recorded: only reuse
        if kept is not None and (self.mode == "recorded" or (self.record and kept.args_digest == digest)):
            self.reused += 1
            return ToolOutcome(kept.result, kept.status, kept.latency_ms), True
        if self.mode == "recorded":
            return ToolOutcome(f"no recorded result for {server}.{tool} (call {cid}); replay with --live-tools "
                               f"to call it", "unrecorded"), False
        self.called += 1
        outcome = await self.pool.call(server, tool, args, timeout_s)
        if self.ledger is not None and self.record and outcome.status in ("ok", "error"):
            # a timeout or a lost server is not a result: a run again may call it again
            await self.ledger.put(Recorded(cid, server, tool, digest, outcome.status, outcome.text,
                                           outcome.latency_ms), task_identity(task))
        return outcome, False

    def _event(self, task: Record, cid: str, step: int, index: int, server: str, tool: str, args: dict[str, Any],
               outcome: ToolOutcome, reused: bool, latency_ms: float, started_ms: int, plan: str | None) -> Record:
        data = outcome.text.encode()
        return {"call_id": cid, "task_id": task["task_id"], "step": step, "call_index": index, "server": server,
                "tool": tool, "arguments": redact(json.dumps(args, sort_keys=True)), "status": outcome.status,
                "reused": reused, "latency_ms": latency_ms, "result_bytes": len(data),
                "result_digest": hashlib.sha256(data).hexdigest(),
                "error": None if outcome.ok else redact(outcome.text)[:500], "plan": plan,
                "tenant": tenant_of(task), "started_at": started_ms, "created_at": self._now()}
