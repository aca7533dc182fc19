"""Records shaped like the topics' events, for the memory tier tests, and a producer that sends them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from schemas import default_codec
from sinks.base import MemoryRecord
from streams import kafka
from streams.settings import Settings

NOW = 1_764_000_000_000


def result(task_id: str, text: str, tenant: str = "default") -> dict[str, Any]:
    return {"task_id": task_id, "status": "ok", "output": text, "model": "simulator/fast-1", "cost_usd": 0.001,
            "latency_ms": 3.0, "steps": 1, "tokens_in": 10, "tokens_out": 20, "tenant": tenant, "error": None,
            "metadata": {"pattern": "fast"}, "created_at": NOW}


def output(task_id: str, text: str, step: int = 1) -> dict[str, Any]:
    return {"output_id": f"{task_id}:1:{step}", "task_id": task_id, "agent": "coder", "step": step,
            "model": "simulator/fast-1", "attempt": 1, "status": "ok", "output": text, "tokens_in": 10,
            "tokens_out": 20, "cost_usd": 0.0005, "latency_ms": 2.0, "error": None, "metadata": {},
            "created_at": NOW}


def outcome(task_id: str) -> dict[str, Any]:
    return {"outcome_id": f"o-{task_id}", "task_id": task_id, "experiment": "exp", "variant": "a", "success": True,
            "quality": 0.8, "source": "test", "created_at": NOW}


def wrap(event_type: str, record: dict[str, Any], topic: str = "t.agent.results", partition: int = 0,
         offset: int = 0) -> MemoryRecord:
    return MemoryRecord(event_type, record, topic, partition, offset, NOW, record.get("task_id", "k").encode(),
                        b"raw-" + str(offset).encode())


def run_id() -> str:
    return uuid.uuid4().hex[:8]


def code_change(sha: str, message: str) -> dict[str, Any]:
    return {"sha": sha, "repository": "shop", "author": "dev", "committed_at": NOW, "message": message,
            "files": ["cart/checkout.py"], "patch": "", "patch_truncated": False, "created_at": NOW}


async def produce(settings: Settings, items: Sequence[tuple[str, str, dict[str, Any]]],
                  raw: Sequence[tuple[str, bytes]] = ()) -> None:
    """Send (topic, event type, record) items keyed by task_id, then raw (topic, bytes) records keyed `poison`."""
    codec = default_codec()
    producer = kafka.producer(settings, linger_ms=5)
    await producer.start()
    try:
        for topic, event_type, record in items:
            await producer.send(settings.topic(topic), codec.encode(event_type, record),
                                key=record["task_id"].encode())
        for topic, value in raw:
            await producer.send(settings.topic(topic), value, key=b"poison")
        await producer.flush()
    finally:
        await producer.stop()
