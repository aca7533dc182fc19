"""The task processor: agent.tasks -> an LLM agent run -> agent.outputs (each step) + agent.results.

Records arrive as raw bytes and are decoded here, inside a guard: a record that cannot be decoded
or processed becomes a dead letter and the stream goes on (an exception escaping a Faust processor
would stop it consuming without a word).
"""

from __future__ import annotations

from typing import Any

import faust

from agents.runner import TaskRunner
from schemas import Codec, DecodeError
from streams.deadletters import Origin, dead_letter
from streams.logs import get_logger
from streams.settings import Settings
from streams.topics import DEADLETTERS, OUTPUTS, RESULTS, TASKS

__all__ = ["register_task_processor"]

log = get_logger(__name__)


def register_task_processor(
    app: faust.App, topics: dict[str, faust.TopicT], runner: TaskRunner, codec: Codec, settings: Settings
) -> Any:
    """Attach the task processor to `app`; `topics` maps logical topic names to Faust topics."""
    outputs, results, deadletters = topics[OUTPUTS], topics[RESULTS], topics[DEADLETTERS]

    async def send_dead(stage: str, origin: Origin, error: BaseException, payload: bytes, key: bytes | None) -> None:
        log.warning("dead letter", stage=stage, topic=origin.topic, partition=origin.partition,
                    offset=origin.offset, error=str(error)[:300])
        record = dead_letter(stage, origin, error, payload, key)
        await deadletters.send(key=key, value=codec.encode("DeadLetter", record))

    async def handle(event: faust.EventT) -> None:
        message = event.message
        origin = Origin(message.topic, message.partition, message.offset)
        raw, key = event.value or b"", event.key  # a tombstone is kept as empty bytes
        try:
            task = codec.decode_as("TaskRequested", raw)
        except DecodeError as exc:
            await send_dead("decode", origin, exc, raw, key)
            return
        try:
            run = await runner.run(task)
            task_key = task["task_id"].encode()
            for output in run.outputs:
                await outputs.send(key=task_key, value=codec.encode("AgentOutput", output))
            await results.send(key=task_key, value=codec.encode("TaskResult", run.result))
        except Exception as exc:  # a bug or a bad record must not stop the stream
            await send_dead("process", origin, exc, raw, key)
            return
        log.info("task done", stage="process", task_id=task["task_id"], status=run.result["status"],
                 latency_ms=round(run.result["latency_ms"], 1))

    @app.agent(topics[TASKS], name="task-processor", concurrency=settings.worker_concurrency)
    async def task_processor(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await handle(event)

    return task_processor
