"""Wait for the workers' consumer group to settle, so no rebalance is left to redeliver records."""

from __future__ import annotations

import asyncio
import time

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.settings import Settings


async def wait_for_stable_group(settings: Settings, members: int, timeout_s: float = 90.0) -> None:
    """Until the group `settings.app_id` is Stable with `members` members (else AssertionError)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_servers)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        state: object = None
        while time.monotonic() < deadline:
            try:
                group = (await admin.describe_consumer_groups([settings.app_id]))[0].to_object()["groups"][0]
            except KafkaError as exc:  # no coordinator yet: the group does not exist yet
                state = exc
            else:
                state = (group["state"], len(group["members"]))
                if state == ("Stable", members):
                    return
            await asyncio.sleep(0.5)
        raise AssertionError(f"group {settings.app_id} not Stable with {members} members: {state}")
    finally:
        await admin.close()
