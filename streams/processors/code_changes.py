"""The code-change processor: code.changes -> documentation and review tasks on agent.tasks.

A record that cannot be decoded or turned into tasks becomes a dead letter (streams/processors/guard.py)
and the stream goes on. `CodeChangeHandler` is the whole logic; `register_code_change_processor` wires it to Faust.
"""

from __future__ import annotations

from typing import Any

import faust

from schemas import Codec
from streams.code.signing import signing_key
from streams.code.tasks import tasks_for_change
from streams.logs import get_logger
from streams.processors.guard import Guard, Incoming, Send, topic_sender
from streams.settings import Settings
from streams.topics import CODE_CHANGES, DEADLETTERS, TASKS

__all__ = ["CodeChangeHandler", "register_code_change_processor"]

log = get_logger(__name__)

STAGE = "code-tasks"


class CodeChangeHandler:
    """One CodeChange -> its TaskRequested records, each sent keyed by task id through `send_task`."""

    def __init__(self, guard: Guard, send_task: Send, key: bytes) -> None:
        self.guard, self.send_task, self.key = guard, send_task, key  # key: signs the tasks (streams/code/signing.py)

    async def __call__(self, incoming: Incoming) -> None:
        change = await self.guard.decode("CodeChange", incoming, "code-decode")
        if change is None:
            return
        tasks = tasks_for_change(change, self.key)
        for task in tasks:
            await self.send_task(task["task_id"].encode(), self.guard.codec.encode("TaskRequested", task))
        log.info("code change", stage=STAGE, sha=change["sha"][:12], tasks=len(tasks))


def register_code_change_processor(app: faust.App, topics: dict[str, faust.TopicT], codec: Codec,
                                   settings: Settings) -> Any:
    """Attach the processor to `app`; `topics` maps logical topic names to Faust topics."""
    guard = Guard(codec, topic_sender(topics[DEADLETTERS]))
    handle = CodeChangeHandler(guard, topic_sender(topics[TASKS]), signing_key(settings))

    @app.agent(topics[CODE_CHANGES], name="code-change-processor")
    async def code_change_processor(stream: faust.StreamT) -> None:
        await guard.consume(stream, STAGE, handle)

    return code_change_processor
