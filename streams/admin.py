"""Create the project's topics up front, with their partition counts, and wait until they are led.

Auto-creation is off on the embedded broker (and should be on any broker): a topic created by a
first send would get the broker's partition count, not ours.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams import kafka
from streams.lifecycle import started
from streams.settings import Settings
from streams.topics import TopicSpec, table_specs, topic_specs

__all__ = ["delete_topics", "ensure_topics"]


async def ensure_topics(settings: Settings, specs: list[TopicSpec] | None = None, timeout_s: float = 30.0,
                        wait_for_kafka: bool = False) -> list[str]:
    """Create the missing topics; return the names created. Idempotent; retried while a node is down,
    and while Kafka cannot be reached at all with `wait_for_kafka` (a starting worker), else that is
    a KafkaUnavailable at once (a command at the terminal)."""
    wanted = specs if specs is not None else topic_specs(settings) + table_specs(settings)
    return await kafka.retrying(lambda: _ensure(settings, wanted, timeout_s, wait_for_kafka), timeout_s)


async def _ensure(settings: Settings, wanted: list[TopicSpec], timeout_s: float, wait_for_kafka: bool) -> list[str]:
    if wait_for_kafka:
        admin = await started(lambda: kafka.admin(settings), timeout_s, "admin")
    else:
        admin = kafka.admin(settings)
        await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in wanted if s.name not in existing]
        if missing:
            new = [NewTopic(s.name, s.partitions, settings.replication_factor, topic_configs=_configs(s))
                   for s in missing]
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:  # another process won the race: fine
                pass
        await _wait_led(admin, [s.name for s in wanted], timeout_s)
        return [s.name for s in missing]
    finally:
        await admin.close()


def _configs(spec: TopicSpec) -> dict[str, str]:
    if not spec.compacted:
        return {}
    if spec.retention_ms is None:
        return {"cleanup.policy": "compact"}
    return {"cleanup.policy": "compact,delete", "retention.ms": str(spec.retention_ms)}


async def _wait_led(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float) -> None:
    """Wait until every partition of every topic has a leader, so the first send does not bounce."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        ready = all(
            t.get("error_code", 0) == 0
            and t.get("partitions")
            and all(p.get("leader", -1) >= 0 for p in t["partitions"])
            for t in described
        )
        if ready and len(described) == len(names):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not ready after {timeout_s}s: {names}")
        await asyncio.sleep(0.1)


async def delete_topics(settings: Settings, names: list[str]) -> None:
    """Delete topics (used to clean up benchmark and test runs)."""
    admin = kafka.admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
