"""Validation at the door on the real stack: a worker answers nonsense `rejected`; `submit` refuses it."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest
from click.testing import CliRunner

from agents.prompt_registry import PromptRegistry
from schemas import default_codec
from streams.cli.main import cli
from streams.client import ResultWatcher, make_task, submit_tasks
from streams.replay.range import Bound, read_range
from streams.settings import Settings
from streams.topics import OUTPUTS

pytestmark = pytest.mark.integration

codec = default_codec()

# Each decodes as a TaskRequested (the client does not check them), and each asks for something unknown.
BAD = {
    "pattern": {"pattern": "bogus"},
    "capability": {"capability": "juggling"},
    "optimization": {"optimization": "cheapest-ever"},
    "description": {"description": "   "},
    "budget_usd": {"budget_usd": math.nan},
}


async def test_a_worker_answers_invalid_tasks_rejected_with_the_reason_and_charges_nothing(
        isolated: Settings, worker_factory) -> None:
    worker_factory()
    bad = {field: make_task(fields.pop("description", "add a cache"), tenant="acme", **fields)
           for field, fields in ((f, dict(v)) for f, v in BAD.items())}
    good = make_task("add a cache to the user lookup", tenant="acme")
    async with ResultWatcher(isolated, codec) as watcher:
        ids = await submit_tasks(isolated, codec, [*bad.values(), good])
        results = await watcher.wait(ids, 120)
    assert set(results) == set(ids)
    for field, task in bad.items():
        r = results[task["task_id"]]
        assert r["status"] == "rejected" and r["cost_usd"] == 0.0 and r["steps"] == 0, r
        assert r["error"].startswith(f"invalid task: {field} ") and "is not allowed: " in r["error"]
        assert r["metadata"]["rejected_fields"] == field and r["tenant"] == "acme"
    assert "'bogus' is not allowed: one of fast, balanced, quality" in results[bad["pattern"]["task_id"]]["error"]
    assert "nan is not allowed: a finite number >= 0" in results[bad["budget_usd"]["task_id"]]["error"]
    ok = results[good["task_id"]]
    assert ok["status"] == "ok"
    # Nothing was charged for the rejected ones: the tenant's spend is the one good task's cost.
    assert float(ok["metadata"]["tenant_spend_usd"]) == pytest.approx(ok["cost_usd"])
    # Every output is on the broker before its task's result: none is a rejected task's.
    outputs = await read_range(isolated, codec, isolated.topic(OUTPUTS), Bound("earliest"), Bound("now"))
    assert {o.record["task_id"] for o in outputs} == {good["task_id"]}


def _submit(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["submit", *args], env=settings.as_env())
    return result.exit_code, result.output


async def test_submit_accepts_a_capability_the_prompt_registry_holds_and_refuses_an_unknown_one(
        isolated: Settings, worker_factory) -> None:
    worker_factory()
    name = f"triage-{uuid.uuid4().hex[:8]}"
    registry = PromptRegistry(isolated.postgres_dsn).migrate()
    try:
        registry.add_version(name, "You triage {{ task }}.")
    finally:
        registry.close()
    code, out = await asyncio.to_thread(_submit, isolated, "sort these bug reports", "--capability", name,
                                        "--wait", "--timeout", "90")
    assert code == 0 and " ok  " in out, out
    code, out = await asyncio.to_thread(_submit, isolated, "sort these bug reports", "--capability", "triagge")
    assert code == 1 and "capability 'triagge' is not allowed: one of coding" in out
    assert "or a prompt name in the prompt registry" in out and "submitted:" not in out
