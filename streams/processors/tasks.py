"""The task processors: agent.tasks -> (re-keyed by tenant) -> a swarm run -> agent.outputs + agent.results.

Two stages. `task-router` decodes each task and forwards its bytes to agent.tasks.by-tenant keyed by
tenant, so every task of a tenant lands in one partition and so in one worker: that worker's budget
ledger then sees every reservation of the tenant (agents/budget.py states the guarantee). `swarm`
runs the task and settles its spend into the `tenant-spend` table (changelog-backed, so a restarted
worker recovers it). Records arrive as raw bytes and are decoded inside a guard: a record that cannot
be decoded or processed becomes a dead letter and the stream goes on.
"""

from __future__ import annotations

from typing import Any

import faust

from agents.runner import TaskRunner
from schemas import Codec, DecodeError
from streams.logs import get_logger
from streams.processors.guard import DeadLetterSender
from streams.settings import Settings
from streams.topics import DEADLETTERS, OUTPUTS, RESULTS, TASKS, TASKS_BY_TENANT, TASKS_DONE_TABLE, TENANT_SPEND_TABLE

__all__ = ["TableSpendStore", "register_task_processor"]

log = get_logger(__name__)


class TableSpendStore:
    """The budget ledger's SpendStore over a Faust table (writes must happen while handling an event)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> float:
        return float(self.table.get(key) or 0.0)

    def add(self, key: str, amount: float) -> None:
        self.table[key] = self.get(key) + amount


def register_task_processor(
    app: faust.App, topics: dict[str, faust.TopicT], runner: TaskRunner, codec: Codec, settings: Settings
) -> Any:
    """Attach both stages to `app`; `topics` maps logical topic names to Faust topics."""
    outputs, results, deadletters = topics[OUTPUTS], topics[RESULTS], topics[DEADLETTERS]
    by_tenant = topics[TASKS_BY_TENANT]
    spend = app.Table(TENANT_SPEND_TABLE, default=float, partitions=settings.partitions,
                      schema=faust.Schema(key_serializer="json", value_serializer="json"))
    runner.ledger.store = TableSpendStore(spend)
    # Tasks already answered: a task redelivered after a crash or rebalance (its offset not yet
    # committed) is skipped instead of run and charged twice. Same partitioning as `spend`.
    done = app.Table(TASKS_DONE_TABLE, default=int, partitions=settings.partitions,
                     schema=faust.Schema(key_serializer="json", value_serializer="json"))

    send_dead = DeadLetterSender(deadletters, codec)

    async def decode(event: faust.EventT) -> dict[str, Any] | None:
        """The task, or None after dead-lettering bytes that are not a TaskRequested (tombstones too)."""
        try:
            return codec.decode_as("TaskRequested", event.value or b"")
        except DecodeError as exc:
            await send_dead("decode", event, exc)
            return None

    async def route(event: faust.EventT) -> None:
        task = await decode(event)
        if task is None:
            return
        try:
            await by_tenant.send(key=(task.get("tenant") or "default").encode(), value=event.value)
        except Exception as exc:  # a send failure must not stop the stream
            await send_dead("route", event, exc)

    async def handle(event: faust.EventT) -> None:
        task = await decode(event)
        if task is None:
            return
        if done.get(task["task_id"]):
            log.info("task already done: skipped", stage="process", task_id=task["task_id"])
            return
        try:
            run = await runner.run(task)
            task_key = task["task_id"].encode()
            # Sent at once and awaited until the broker has them (not attached to the offset commit,
            # Faust's default): only then may the task be marked done, or a crash in between would
            # leave it marked done with no result.
            sent = [await outputs.send(key=task_key, value=codec.encode("AgentOutput", o), force=True)
                    for o in run.outputs]
            sent.append(await results.send(key=task_key, value=codec.encode("TaskResult", run.result), force=True))
            for delivery in sent:
                await delivery
            done[task["task_id"]] = run.result["created_at"]
        except Exception as exc:  # a bug or a bad record must not stop the stream
            await send_dead("process", event, exc)
            return
        log.info("task done", stage="process", task_id=task["task_id"], status=run.result["status"],
                 pattern=run.result["metadata"].get("pattern"), steps=run.result["steps"],
                 latency_ms=round(run.result["latency_ms"], 1))

    @app.agent(topics[TASKS], name="task-router", concurrency=1)
    async def task_router(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await route(event)

    @app.agent(by_tenant, name="swarm", concurrency=settings.worker_concurrency)
    async def swarm(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await handle(event)

    return swarm
