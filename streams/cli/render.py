"""Turn decoded records into lines a person (or `jq`) can read."""

from __future__ import annotations

import base64
import json
from typing import Any

from streams.client import Received

__all__ = ["render_received", "summary"]

_SUMMARY_FIELDS = {
    "TaskRequested": ("task_id", "pattern", "capability", "description"),
    "AgentOutput": ("task_id", "agent", "step", "model", "status", "latency_ms", "output"),
    "TaskResult": ("task_id", "status", "model", "cost_usd", "latency_ms", "output"),
    "PromptOutcome": ("experiment", "variant", "success", "quality"),
    "PromptDecision": ("experiment", "decision", "winner", "reason"),
    "CodeChange": ("sha", "author", "message"),
    "DeadLetter": ("stage", "topic", "partition", "offset", "error"),
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def summary(event_type: str, record: dict[str, Any], width: int = 80) -> str:
    """The fields that matter for this event type, `k=v` on one line."""
    parts = []
    for name in _SUMMARY_FIELDS.get(event_type, tuple(record)):
        value = record.get(name)
        if isinstance(value, float):
            value = round(value, 6)
        text = " ".join(str(value).split())
        parts.append(f"{name}={text[:width]!s}")
    return " ".join(parts)


def render_received(r: Received, as_json: bool) -> str:
    where = {"topic": r.topic, "partition": r.partition, "offset": r.offset}
    if as_json:
        body = {"type": r.event_type, "record": r.record} if r.error is None else {"error": r.error}
        return json.dumps({**where, **_jsonable(body)}, sort_keys=True)
    head = f"{r.topic}[{r.partition}]@{r.offset}"
    if r.error is not None:
        return f"{head} UNDECODABLE: {r.error}"
    assert r.event_type is not None and r.record is not None
    return f"{head} {r.event_type} {summary(r.event_type, r.record)}"
