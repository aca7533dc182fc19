"""The runner's memory hook: recalled memories reach the model as context, and their ids are recorded."""

from __future__ import annotations

from typing import Any

import pytest

from agents.factory import RunnerConfig, build_runner
from agents.models import register_models
from agents.simulator import install_simulator


def _recording_runner(memory: Any = None) -> tuple[Any, list[list[dict[str, Any]]]]:
    """A runner on the real litellm path whose router keeps the messages each call was given."""
    runner = build_runner(RunnerConfig(), memory=memory)
    calls: list[list[dict[str, Any]]] = []
    real_call = runner.router.call

    async def call(model: Any, messages: list[dict[str, Any]], max_tokens: int | None = None) -> Any:
        calls.append(messages)
        return await real_call(model, messages, max_tokens)
    runner.router.call = call  # type: ignore[method-assign]
    return runner, calls


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
    source = Memories([{"id": "TaskResult:old-1", "text": "Added   backoff\nto the payments client", "score": 0.8},
                       {"id": "TaskResult:old-2", "text": "Retry budget per tenant", "score": 0.5}])
    runner, calls = _recording_runner(source)
    run = await runner.run(_task())
    assert source.asked == ["t-9"]
    (messages,) = calls
    assert messages[-1] == {"role": "user", "content": "add retries to the HTTP client"}
    context = messages[1]["content"]
    assert messages[1]["role"] == "system" and "[TaskResult:old-1] Added backoff to the payments client" in context
    assert run.outputs[0]["metadata"]["memory_ids"] == "TaskResult:old-1,TaskResult:old-2"
    assert run.result["metadata"]["memories_used"] == "2" and run.result["status"] == "ok"


async def test_no_memories_means_no_context_message_and_a_zero_count() -> None:
    runner, calls = _recording_runner(Memories([]))
    run = await runner.run(_task())
    assert [m["role"] for m in calls[0]] == ["system", "user"]
    assert run.result["metadata"]["memories_used"] == "0" and run.outputs[0]["metadata"]["memory_ids"] == ""


async def test_without_a_memory_source_the_records_are_as_before() -> None:
    run = await build_runner(RunnerConfig()).run(_task())
    assert "memories_used" not in run.result["metadata"] and "memory_ids" not in run.outputs[0]["metadata"]


async def test_an_agent_whose_spec_says_memory_adds_nothing_gets_none_and_costs_no_search(tmp_path) -> None:
    from agents.registry import default_agents_file

    text = default_agents_file().read_text().replace('name = "coder"\n', 'name = "coder"\nmemory = false\n', 1)
    (tmp_path / "agents.toml").write_text(text)
    source = Memories([{"id": "TaskResult:old-1", "text": "Added backoff to the payments client", "score": 0.8}])
    runner = build_runner(RunnerConfig(agents_file=tmp_path / "agents.toml"), memory=source)
    calls: list[list[dict[str, Any]]] = []
    real_call = runner.router.call

    async def call(model: Any, messages: list[dict[str, Any]], max_tokens: int | None = None) -> Any:
        calls.append(messages)
        return await real_call(model, messages, max_tokens)
    runner.router.call = call  # type: ignore[method-assign]

    fast = await runner.run({**_task(), "capability": "coding", "pattern": "fast"})
    assert source.asked == [] and "memory_ids" not in fast.outputs[0]["metadata"]  # no search at all
    assert len(calls[0]) == 2  # system prompt and the task, no memory message
    calls.clear()
    balanced = await runner.run({**_task(), "task_id": "t-10", "capability": "coding", "pattern": "balanced"})
    assert source.asked == ["t-10"]  # the planner and the reviewer take memories
    with_memory = ["old-1" in " ".join(str(m["content"]) for m in messages) for messages in calls]
    assert with_memory == [True, False, True]  # planner, coder (memory = false), reviewer
    assert all(o["metadata"]["memory_ids"] == "TaskResult:old-1" for o in balanced.outputs)
