"""The code-change processor: code.changes -> documentation and review tasks on agent.tasks.

Like the task processor, it takes raw bytes and decodes inside a guard: a record that cannot be
decoded or turned into tasks becomes a dead letter and the stream goes on.
"""

from __future__ import annotations

from typing import Any

import faust

from schemas import Codec, DecodeError
from streams.code.tasks import tasks_for_change
from streams.logs import get_logger
from streams.processors.guard import DeadLetterSender
from streams.topics import CODE_CHANGES, DEADLETTERS, TASKS

__all__ = ["register_code_change_processor"]

log = get_logger(__name__)


def register_code_change_processor(app: faust.App, topics: dict[str, faust.TopicT], codec: Codec) -> Any:
    """Attach the processor to `app`; `topics` maps logical topic names to Faust topics."""
    tasks_topic, send_dead = topics[TASKS], DeadLetterSender(topics[DEADLETTERS], codec)

    async def handle(event: faust.EventT) -> None:
        try:
            change = codec.decode_as("CodeChange", event.value or b"")  # a tombstone decodes as nothing
        except DecodeError as exc:
            await send_dead("code-decode", event, exc)
            return
        try:
            tasks = tasks_for_change(change)
            for task in tasks:
                await tasks_topic.send(key=task["task_id"].encode(), value=codec.encode("TaskRequested", task))
        except Exception as exc:  # a bad record or a bug must not stop the stream
            await send_dead("code-tasks", event, exc)
            return
        log.info("code change", stage="code-tasks", sha=change["sha"][:12], tasks=len(tasks))

    @app.agent(topics[CODE_CHANGES], name="code-change-processor")
    async def code_change_processor(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await handle(event)

    return code_change_processor
