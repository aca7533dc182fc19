"""Wait for the workers' task group to settle, so no rebalance is left to redeliver records."""

from __future__ import annotations

import asyncio
import time

from aiokafka.errors import KafkaError

from streams import kafka
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
