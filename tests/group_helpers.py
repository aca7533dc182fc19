"""Wait on consumer groups: for the workers' task group to settle (so no rebalance is left to redeliver
records), and for a group to have committed everything (so whatever it consumed is done)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.errors import KafkaError

from streams import kafka
from streams.client import end_offsets
from streams.settings import Settings


async def wait_for_stable_group(settings: Settings, members: int, timeout_s: float = 120.0,
                                settle_s: float = 8.0) -> None:
    """Until the task stage's group (`<app id>-tasks`) has been Stable with `members` members for
    `settle_s` (workers that start together often rebalance a second time just after the first)."""
    group_id = f"{settings.app_id}-tasks"
    admin = kafka.admin(settings)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        state: object = None
        stable_since: float | None = None
        while time.monotonic() < deadline:
            try:
                group = (await admin.describe_consumer_groups([group_id]))[0].to_object()["groups"][0]
            except KafkaError as exc:  # no coordinator yet: the group does not exist yet
                state = exc
            else:
                state = (group["state"], len(group["members"]))
            if state != ("Stable", members):
                stable_since = None
            elif stable_since is None:
                stable_since = time.monotonic()
            elif time.monotonic() - stable_since >= settle_s:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"group {group_id} not Stable with {members} members: {state}")
    finally:
        await admin.close()


async def uncommitted(settings: Settings, group_id: str, topics: list[str]) -> int:
    """Records of `topics` (full names) past the offsets `group_id` has committed (all of a partition's
    records when it committed none there)."""
    admin, consumer = kafka.admin(settings), kafka.consumer(settings)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group_id)
        behind = 0
        for topic in topics:
            ends = await end_offsets(settings, consumer, topic)
            starts = await consumer.beginning_offsets(list(ends)) if ends else {}
            for tp, end in ends.items():
                done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else starts[tp]
                behind += max(0, end - done)
        return behind
    finally:
        await consumer.stop()
        await admin.close()


async def wait_until_consumed(settings: Settings, topics: list[str], group_id: str | None = None,
                              timeout_s: float = 120.0) -> None:
    """Until the consumer group(s) reading `topics` (full names) have committed every record there is: what a
    processor that commits after its work has consumed is written. `group_id`: that group; None: every group
    of this app (`settings.app_id`...) that has committed offsets on those topics, at least one."""
    admin = kafka.admin(settings)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                groups = [group_id] if group_id is not None else await _groups_reading(admin, settings, topics)
                behind: dict[str, object] = {g: await uncommitted(settings, g, topics) for g in groups}
            except KafkaError as exc:  # no coordinator yet (a new group, a fresh broker): not consumed yet
                groups, behind = [], {"?": exc}
            if groups and not any(behind.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not consumed within {timeout_s:.0f}s: {topics}: uncommitted by group {behind}")
            await asyncio.sleep(0.3)
    finally:
        await admin.close()


async def _groups_reading(admin: Any, settings: Settings, topics: list[str]) -> list[str]:
    names = [g[0] for g in await admin.list_consumer_groups() if str(g[0]).startswith(settings.app_id)]
    reading = []
    for name in names:
        offsets = await admin.list_consumer_group_offsets(name)
        if any(tp.topic in topics for tp in offsets):
            reading.append(name)
    return reading
