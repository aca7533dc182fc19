"""The task processors: agent.tasks -> a swarm run (in the tenant's partition) -> agent.outputs + agent.results.

Budgets need every task of a tenant in one partition, so in one worker: that worker's budget
ledger then sees every reservation of the tenant (agents/budget.py states the guarantee). A task
keyed by its tenant already is there (Kafka's default partitioner, the same partition count), and
`task-router` runs it at once. Any other task is forwarded to agent.tasks.by-tenant keyed by tenant
and run by `swarm` from there: one more hop, the same guarantee. Both settle spend into the
`tenant-spend` table (changelog-backed, so a restarted worker recovers it). Records arrive as raw
bytes and are decoded inside a guard: a record that cannot be decoded or processed becomes a dead
letter and the stream goes on.
"""

from __future__ import annotations

from typing import Any

import faust
from aiokafka.partitioner import murmur2

from agents.runner import TaskRunner
from schemas import Codec
from schemas.events import tenant_key_of
from streams.logs import get_logger
from streams.processors.guard import DeadLetterSender
from streams.settings import Settings
from streams.topics import (
    DEADLETTERS,
    OUTPUTS,
    RESULTS,
    TASKS,
    TASKS_BY_TENANT,
    TASKS_DONE_TABLE,
    TENANT_SPEND_TABLE,
    dedupe_expiry_s,
)

__all__ = ["TableSpendStore", "register_task_processor", "tenant_partition"]

log = get_logger(__name__)


class TableSpendStore:
    """The budget ledger's SpendStore over a Faust table (writes must happen while handling an event)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> float:
        return float(self.table.get(key) or 0.0)

    def add(self, key: str, amount: float) -> None:
        self.table[key] = self.get(key) + amount


def tenant_partition(tenant_key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives a tenant key: the tenant's partition."""
    return (murmur2(tenant_key) & 0x7FFFFFFF) % partitions


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
    # committed) is skipped instead of run and charged twice. Same partitioning as `spend`. Windowed,
    # so it stays bounded: an id is remembered for at least one window (the current or the last one).
    window = settings.task_dedupe_window_s
    done = app.Table(TASKS_DONE_TABLE, default=int, partitions=settings.partitions,
                     schema=faust.Schema(key_serializer="json", value_serializer="json"),
                     ).tumbling(window, expires=dedupe_expiry_s(settings)).relative_to_now()

    send_dead = DeadLetterSender(deadletters, codec)

    async def decode(event: faust.EventT) -> dict[str, Any] | None:
        """The task, or None after dead-lettering bytes that are not a TaskRequested (tombstones too)."""
        return await send_dead.decode("TaskRequested", event, "decode")

    async def route(event: faust.EventT) -> None:
        task = await decode(event)
        if task is None:
            return
        tenant_key = tenant_key_of(task)
        if event.key == tenant_key and event.message.partition == tenant_partition(tenant_key, settings.partitions):
            await handle(event, task)  # already in its tenant's partition: no second hop
            return
        try:
            await by_tenant.send(key=tenant_key, value=event.value)
        except Exception as exc:  # a send failure must not stop the stream
            await send_dead("route", event, exc)

    async def handle(event: faust.EventT, task: dict[str, Any]) -> None:
        if done[task["task_id"]].now() or done[task["task_id"]].delta(window):
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

    @app.agent(topics[TASKS], name="task-router", concurrency=settings.worker_concurrency)
    async def task_router(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await route(event)

    @app.agent(by_tenant, name="swarm", concurrency=settings.worker_concurrency)
    async def swarm(stream: faust.StreamT) -> None:
        async for event in stream.events():
            task = await decode(event)
            if task is not None:
                await handle(event, task)

    return swarm
