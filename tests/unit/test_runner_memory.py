"""The runner's memory hook: recalled memories reach the model as context, and their ids are recorded."""

from __future__ import annotations

from typing import Any

import pytest

from agents.llm import LLM
from agents.models import register_models
from agents.runner import TaskRunner
from agents.simulator import install_simulator


class Recorder(LLM):
    """The real litellm path, keeping the messages each call was given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[dict[str, Any]]] = []

    async def complete(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Any:
        self.calls.append(messages)
        return await super().complete(model, messages, **params)


class Memories:
    def __init__(self, memories: list[dict[str, Any]]) -> None:
        self.memories = memories
        self.asked: list[str] = []

    async def recall(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        self.asked.append(task["task_id"])
        return self.memories


@pytest.fixture(autouse=True)
def simulator() -> None:
    install_simulator()
    register_models()


def _task() -> dict[str, Any]:
    return {"task_id": "t-9", "description": "add retries to the HTTP client", "created_at": 1}


async def test_memories_are_given_as_context_and_their_ids_recorded() -> None:
    llm = Recorder()
    source = Memories([{"id": "TaskResult:old-1", "text": "Added   backoff\nto the payments client", "score": 0.8},
                       {"id": "TaskResult:old-2", "text": "Retry budget per tenant", "score": 0.5}])
    run = await TaskRunner(llm, "simulator/fast-1", memory=source).run(_task())
    assert source.asked == ["t-9"]
    (messages,) = llm.calls
    assert messages[-1] == {"role": "user", "content": "add retries to the HTTP client"}
    context = messages[1]["content"]
    assert messages[1]["role"] == "system" and "[TaskResult:old-1] Added backoff to the payments client" in context
    assert run.outputs[0]["metadata"]["memory_ids"] == "TaskResult:old-1,TaskResult:old-2"
    assert run.result["metadata"]["memories_used"] == "2" and run.result["status"] == "ok"


async def test_no_memories_means_no_context_message_and_a_zero_count() -> None:
    llm = Recorder()
    run = await TaskRunner(llm, "simulator/fast-1", memory=Memories([])).run(_task())
    assert [m["role"] for m in llm.calls[0]] == ["system", "user"]
    assert run.result["metadata"]["memories_used"] == "0" and run.outputs[0]["metadata"]["memory_ids"] == ""


async def test_without_a_memory_source_the_records_are_as_before() -> None:
    run = await TaskRunner(LLM(), "simulator/fast-1").run(_task())
    assert "memories_used" not in run.result["metadata"] and "memory_ids" not in run.outputs[0]["metadata"]
