"""The code-change processor: code.changes -> documentation and review tasks on agent.tasks.

A record that cannot be decoded or turned into tasks becomes a dead letter (streams/processors/guard.py)
and the stream goes on. `CodeChangeHandler` is the whole logic; it runs on an ordered consumer
(streams/processors/ordered.py): a change is committed only once its tasks are on the broker.
"""

from __future__ import annotations

from collections.abc import Callable

from streams.code.signing import signing_key
from streams.code.tasks import tasks_for_change
from streams.logs import get_logger
from streams.processors.guard import Guard, Incoming, Send
from streams.processors.ordered import OrderedConsumer
from streams.settings import Settings
from streams.topics import CODE_CHANGES, TASKS

__all__ = ["CodeChangeHandler", "code_change_processor"]

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


def code_change_processor(settings: Settings, guard: Guard, send: Callable[[str], Send]) -> OrderedConsumer:
    """code.changes -> tasks; `send(topic)` sends to a project topic."""
    return OrderedConsumer(settings, STAGE, [settings.topic(CODE_CHANGES)], guard,
                           CodeChangeHandler(guard, send(TASKS), signing_key(settings)))
