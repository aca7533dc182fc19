"""Validation at the door: the rule, the runner's `rejected` answer, and a capability that names a prompt."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from agents.clock import now_ms
from agents.factory import RunnerConfig, build_runner
from agents.models import ModelInfo
from agents.prompt_chooser import PromptChooser
from agents.prompt_registry import PromptVersion
from agents.simulator import install_simulator
from agents.validation import describe, task_problems
from schemas import default_codec
from schemas.events import CAPABILITIES, OPTIMIZATIONS, PATTERNS


@pytest.fixture(autouse=True)
def simulator() -> None:
    install_simulator()


def _task(**fields: object) -> dict:
    return {"task_id": "t-1", "description": "add a cache to the user lookup", "created_at": 1, **fields}


@pytest.mark.parametrize("fields", [
    {},
    {"pattern": "", "capability": "", "optimization": ""},  # empty: the Avro defaults
    *({"pattern": p} for p in PATTERNS),
    *({"optimization": o} for o in OPTIMIZATIONS),
    *({"capability": c} for c in sorted(CAPABILITIES)),
    {"budget_usd": None}, {"budget_usd": 0.0}, {"budget_usd": 0.25}, {"budget_usd": 3},
])
def test_a_runnable_task_has_no_problems(fields: dict) -> None:
    assert task_problems(_task(**fields)) == []


@pytest.mark.parametrize(("fields", "field", "allowed"), [
    ({"pattern": "bogus"}, "pattern", "one of fast, balanced, quality"),
    ({"pattern": "Fast"}, "pattern", "one of fast, balanced, quality"),
    ({"capability": "juggling"}, "capability", "coding"),
    ({"optimization": "cheapest-ever"}, "optimization", "one of cost, quality, speed, balanced"),
    ({"optimization": "qualty"}, "optimization", "one of cost, quality, speed, balanced"),
    ({"description": ""}, "description", "non-empty"),
    ({"description": " \n\t "}, "description", "non-empty"),
    ({"budget_usd": math.nan}, "budget_usd", "finite number >= 0"),
    ({"budget_usd": math.inf}, "budget_usd", "finite number >= 0"),
    ({"budget_usd": -0.01}, "budget_usd", "finite number >= 0"),
])
def test_each_bad_field_is_named_with_its_value_and_what_is_allowed(fields: dict, field: str, allowed: str) -> None:
    (problem,) = task_problems(_task(**fields))
    assert problem.field == field and problem.value is fields[field]
    text = str(problem)
    assert text.startswith(f"{field} {fields[field]!r} is not allowed: ") and allowed in text


def test_every_problem_is_reported_and_long_values_are_cut() -> None:
    problems = task_problems(_task(pattern="x" * 500, optimization="y", budget_usd=-1.0, description=""))
    assert [p.field for p in problems] == ["description", "pattern", "optimization", "budget_usd"]
    line = describe(problems)
    assert line.startswith("description '' is not allowed") and "\n" not in line
    assert "x" * 500 not in line and "'xxx" in line


def test_a_capability_may_be_a_prompt_name_the_caller_knows() -> None:
    assert [p.field for p in task_problems(_task(capability="review-v7"))] == ["capability"]
    assert task_problems(_task(capability="review-v7"), prompts={"review-v7"}) == []


@pytest.mark.parametrize("fields", [
    {"pattern": "bogus"}, {"capability": "juggling"}, {"optimization": "cheapest-ever"}, {"description": "  "},
    {"budget_usd": math.nan},
])
async def test_the_runner_rejects_without_calling_a_model_or_charging(fields: dict) -> None:
    calls: list[dict] = []

    class Memory:
        async def recall(self, task: dict) -> list[dict]:
            calls.append(task)
            return []

    # Every model of this runner fails: a task that reached one would end `failed`, not `rejected`.
    broken = (ModelInfo("openai/model-x", 1e-6, 1e-6, quality=0.5, context_window=32768,
                        litellm_params={"api_base": "http://127.0.0.1:9/v1", "api_key": "none"}),)
    runner = build_runner(RunnerConfig(num_retries=0, tenant_daily_budget_usd=1.0), models=broken, memory=Memory())
    run = await runner.run(_task(tenant="acme", metadata={"sha": "abc"}, **fields))
    (field,) = fields
    result = run.result
    assert run.outputs == [] and calls == []
    assert result["status"] == "rejected" and result["task_id"] == "t-1" and result["tenant"] == "acme"
    assert result["error"].startswith(f"invalid task: {field} ") and result["metadata"]["rejected_fields"] == field
    assert result["metadata"]["sha"] == "abc"  # the task's metadata links the answer back, as on any result
    assert result["cost_usd"] == 0.0 and result["steps"] == 0 and runner.ledger.tenant_spent("acme") == 0.0
    default_codec().encode("TaskResult", result)  # a valid record of the contract


async def test_the_runner_no_longer_runs_an_unknown_pattern_as_fast() -> None:
    runner = build_runner(RunnerConfig())
    assert (await runner.run(_task(pattern="fast"))).result["status"] == "ok"
    assert (await runner.run(_task(pattern="qualty"))).result["status"] == "rejected"


class _Registry:
    """The two reads the chooser makes of the prompt registry, over a list, counting reads."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.reads = 0

    def versions(self) -> list[PromptVersion]:
        self.reads += 1
        return [PromptVersion(n, 1, "You {{ task }}", ["task"], {}, "me", datetime.now(UTC), True)
                for n in self.names]

    def experiments(self, status: str | None = None) -> list:
        return []


async def test_a_capability_named_after_a_registry_prompt_runs_even_if_added_after_the_view_was_read() -> None:
    registry = _Registry()
    chooser = PromptChooser(registry, ttl_s=3600)  # type: ignore[arg-type]
    runner = build_runner(RunnerConfig(), prompts=chooser)
    assert (await runner.run(_task(capability="review-v7"))).result["status"] == "rejected"
    registry.names.append("review-v7")  # added after the cached view was read, before the task was made
    run = await runner.run(_task(capability="review-v7", created_at=now_ms() + 1))
    assert run.result["status"] == "ok" and run.outputs[0]["metadata"]["prompt"] == "review-v7"
    reads = registry.reads
    # A task older than the view names no prompt the registry could have had: no read for it.
    assert (await runner.run(_task(capability="nope", created_at=1))).result["status"] == "rejected"
    assert registry.reads == reads


async def test_a_prompt_named_capability_is_not_rejected_while_the_registry_cannot_be_read() -> None:
    """A worker started during a PostgreSQL outage knows no prompt yet: the task runs on the built-in
    prompt, as every task does while the registry is down, rather than being rejected for a name the
    registry may well hold (the chaos suite's experiment tasks met this during its store outage)."""
    registry = _Registry()
    chooser = PromptChooser(registry, ttl_s=0)  # type: ignore[arg-type]
    runner = build_runner(RunnerConfig(), prompts=chooser)

    def unreachable() -> list[PromptVersion]:
        raise OSError("connection refused")

    registry.versions = unreachable  # type: ignore[method-assign]
    run = await runner.run(_task(capability="review-v7", created_at=now_ms() + 1))
    assert run.result["status"] == "ok" and "rejected_fields" not in run.result["metadata"]
    assert (await runner.run(_task(pattern="qualty"))).result["status"] == "rejected"  # still checked
