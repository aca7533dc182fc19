"""Agent registry, model routing, swarm patterns and budgets, through the real litellm path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.budget import BudgetLedger, MemorySpendStore, TaskBudget
from agents.factory import RunnerConfig, build_runner
from agents.judging import parse_scores
from agents.models import SIMULATOR_MODELS, ConfigError, ModelInfo, load_models
from agents.registry import AgentRegistry, load_agents
from agents.routing import order_models
from agents.simulator import install_simulator


@pytest.fixture(autouse=True)
def simulator() -> None:
    install_simulator()


def _task(n: int = 1, **fields: object) -> dict:
    return {"task_id": f"t-{n}", "description": "add a cache to the user lookup", "created_at": 1, **fields}


def test_the_packaged_agents_are_the_six() -> None:
    specs = load_agents(models=SIMULATOR_MODELS)
    assert [s.name for s in specs] == ["planner", "coder", "researcher", "reviewer", "tester", "documenter"]
    registry = AgentRegistry(specs)
    assert registry.for_capability("testing").name == "tester"
    assert registry.for_capability("judging").name == "reviewer"
    assert all(s.concurrency >= 1 and s.prompt for s in specs)


@pytest.mark.parametrize(("body", "agent", "field"), [
    ('[[agents]]\nname = "x"\ncapabilities = ["coding"]\nprompt = "p"\nconcurrency = 0\n', "'x'", "concurrency"),
    ('[[agents]]\nname = "y"\ncapabilities = ["juggling"]\nprompt = "p"\n', "'y'", "capabilities"),
    ('[[agents]]\nname = "z"\ncapabilities = ["coding"]\n', "'z'", "prompt"),
    ('[[agents]]\nname = "w"\ncapabilities = ["coding"]\nprompt = "p"\nmodels = ["nope/m"]\n', "'w'", "models"),
    ('[[agents]]\nname = "v"\ncapabilities = ["coding"]\nprompt = "p"\ncolour = "red"\n', "'v'", "colour"),
    ('[[agents]]\ncapabilities = ["coding"]\nprompt = "p"\n', "agents[0]", "name"),
])
def test_a_bad_agent_spec_names_file_agent_and_field(tmp_path: Path, body: str, agent: str, field: str) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as caught:
        load_agents(path, SIMULATOR_MODELS)
    message = str(caught.value)
    assert str(path) in message and agent in message and repr(field) in message


def test_a_model_table_loads_from_toml_and_rejects_bad_fields(tmp_path: Path) -> None:
    good = tmp_path / "models.toml"
    good.write_text('[[models]]\nname = "openai/m1"\ninput_cost_per_token = 1e-6\noutput_cost_per_token = 2e-6\n'
                    'quality = 0.8\ncontext_window = 32768\ncapabilities = ["coding"]\n'
                    'litellm_params = { api_base = "http://127.0.0.1:1/v1" }\n')
    (model,) = load_models(good)
    assert model.can("coding") and not model.can("review") and model.litellm_params["api_base"].endswith("/v1")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[models]]\nname = "openai/m2"\ninput_cost_per_token = 1e-6\noutput_cost_per_token = 2e-6\n'
                   'quality = 3\n')
    with pytest.raises(ConfigError, match=r"bad.toml: model 'openai/m2': field 'quality'"):
        load_models(bad)


def test_each_optimization_orders_the_chain() -> None:
    fast, balanced, quality = SIMULATOR_MODELS
    observed = {fast.name: 900.0, balanced.name: 300.0, quality.name: 2000.0}
    latency = lambda m: observed[m.name]  # noqa: E731
    assert order_models(SIMULATOR_MODELS, "cost", latency)[0] == fast
    assert order_models(SIMULATOR_MODELS, "quality", latency)[0] == quality
    assert order_models(SIMULATOR_MODELS, "speed", latency)[0] == balanced
    # balanced-1 is neither cheapest nor best but fastest and middling: on the Pareto front, best sum.
    assert order_models(SIMULATOR_MODELS, "balanced", latency)[0] == balanced
    dominated = ModelInfo("simulator/worse", 1e-5, 1e-5, quality=0.1)
    observed[dominated.name] = 5000.0
    assert order_models((*SIMULATOR_MODELS, dominated), "balanced", latency)[-1] == dominated


async def test_fast_is_one_step_and_balanced_is_planner_coder_reviewer_with_prior_outputs() -> None:
    runner = build_runner(RunnerConfig())
    fast = await runner.run(_task(1, pattern="fast", capability="research", optimization="cost"))
    assert [o["agent"] for o in fast.outputs] == ["researcher"]
    assert fast.outputs[0]["model"] == "simulator/fast-1"  # cost -> cheapest capable
    balanced = await runner.run(_task(2, pattern="balanced", optimization="quality"))
    assert [(o["agent"], o["step"]) for o in balanced.outputs] == [("planner", 1), ("coder", 2), ("reviewer", 3)]
    assert all(o["model"] == "simulator/quality-1" and o["status"] == "ok" for o in balanced.outputs)
    result = balanced.result
    assert result["steps"] == 3 and result["status"] == "ok"
    assert result["cost_usd"] == pytest.approx(sum(o["cost_usd"] for o in balanced.outputs))
    assert result["tokens_in"] == sum(o["tokens_in"] for o in balanced.outputs)
    # each step saw the previous ones: its prompt (so its tokens) grows
    tokens = [o["tokens_in"] for o in balanced.outputs]
    assert tokens[0] < tokens[1] < tokens[2]
    assert balanced.outputs[1]["output"] in result["output"] and balanced.outputs[2]["output"] in result["output"]


async def test_quality_runs_candidates_in_parallel_and_the_judged_best_wins() -> None:
    install_simulator(latency_ms=150)
    runner = build_runner(RunnerConfig(quality_candidates=3))
    run = await runner.run(_task(3, pattern="quality", capability="coding"))
    candidates, judge = run.outputs[:3], run.outputs[3]
    assert [o["step"] for o in run.outputs] == [1, 2, 3, 4]
    assert judge["metadata"]["role"] == "judging" and judge["agent"] == "reviewer"
    scores = {o["step"]: float(o["metadata"]["score"]) for o in candidates}
    winner = next(o for o in candidates if o["metadata"].get("winner") == "true")
    assert scores[winner["step"]] == max(scores.values())
    assert run.result["output"] == winner["output"] and run.result["metadata"]["winner_step"] == str(winner["step"])
    assert parse_scores(judge["output"], 3) == scores and all(0 <= v <= 1 for v in scores.values())
    assert judge["metadata"]["judged"] == "1,2,3" and "unparsed" not in judge["metadata"]
    # parallel: the critical path is one candidate plus the judge, not three candidates
    assert run.result["latency_ms"] < sum(o["latency_ms"] for o in run.outputs)
    assert max(int(o["metadata"]["in_flight"]) for o in candidates) == 3


async def test_50_concurrent_tasks_never_spend_more_than_the_tenant_budget() -> None:
    """A budget that affords 10 calls: reservations stop the other 40 before they call."""
    install_simulator(latency_ms=50)
    probe = build_runner(RunnerConfig())
    one = await probe.run(_task(0, optimization="cost"))
    estimate = one.result["cost_usd"]
    spec = probe.registry.get("coder")
    model = SIMULATOR_MODELS[0]
    reserved_each = model.cost(len(_task()["description"]) // 3 + 200, spec.max_output_tokens)
    budget = 10 * reserved_each
    store = MemorySpendStore()
    runner = build_runner(RunnerConfig(tenant_daily_budget_usd=budget, degrade_share=1.0), store=store)
    runs = await asyncio.gather(*(runner.run(_task(n, optimization="cost", tenant="acme")) for n in range(50)))
    statuses = [r.result["status"] for r in runs]
    spent = runner.ledger.tenant_spent("acme")
    assert spent <= budget
    assert spent == pytest.approx(sum(r.result["cost_usd"] for r in runs))
    assert statuses.count("ok") >= 10 and statuses.count("budget_exceeded") >= 1
    assert set(statuses) == {"ok", "budget_exceeded"}
    blocked = next(r for r in runs if r.result["status"] == "budget_exceeded")
    assert "budget exceeded" in blocked.result["error"] and blocked.result["cost_usd"] == 0.0
    assert blocked.outputs[0]["status"] == "budget_exceeded"
    # Every call that ran cost what the probe's identical call cost, no more than its reservation: the
    # tenant paid for exactly the calls that ran, and reserving kept it within the budget.
    assert 0 < estimate <= reserved_each
    assert {r.result["cost_usd"] for r in runs if r.result["status"] == "ok"} == {estimate}
    assert spent == pytest.approx(statuses.count("ok") * estimate)


async def test_a_task_budget_and_degrading_to_the_cheapest_model() -> None:
    runner = build_runner(RunnerConfig())
    broke = await runner.run(_task(1, optimization="quality", budget_usd=1e-9))
    assert broke.result["status"] == "budget_exceeded" and broke.outputs[0]["status"] == "budget_exceeded"
    ledger = BudgetLedger(MemorySpendStore(), daily_budget_usd=1.0, degrade_share=0.5)
    ledger.store.add(ledger.key("acme"), 0.6)
    assert ledger.should_degrade("acme", TaskBudget(None))
    degraded = build_runner(RunnerConfig(tenant_daily_budget_usd=1.0, degrade_share=0.5))
    degraded.ledger.store.add(degraded.ledger.key("acme"), 0.6)
    run = await degraded.run(_task(2, optimization="quality", tenant="acme"))
    assert run.outputs[0]["model"] == "simulator/fast-1" and "degraded" in run.outputs[0]["metadata"]


async def test_an_agents_concurrency_limit_and_its_own_price_hold(tmp_path: Path) -> None:
    install_simulator(latency_ms=60)
    path = tmp_path / "agents.toml"
    path.write_text("\n".join(
        f'[[agents]]\nname = "{cap}er"\ncapabilities = ["{cap}"]\nprompt = "p"\nconcurrency = 2\n'
        'input_cost_per_token = 0.001\noutput_cost_per_token = 0.002\n'
        for cap in ("planning", "coding", "review", "judging")))
    runner = build_runner(RunnerConfig(agents_file=path, max_in_flight=100))
    runs = await asyncio.gather(*(runner.run(_task(n)) for n in range(6)))
    assert max(int(r.outputs[0]["metadata"]["in_flight"]) for r in runs) <= 2
    assert runner.steps.peak_in_flight == 2
    out = runs[0].outputs[0]
    assert out["cost_usd"] == pytest.approx(out["tokens_in"] * 0.001 + out["tokens_out"] * 0.002)


async def test_a_pinned_model_is_tried_first_whatever_the_objective() -> None:
    runner = build_runner(RunnerConfig(pinned_model="simulator/quality-1"))
    run = await runner.run(_task(1, optimization="cost"))
    assert run.outputs[0]["model"] == "simulator/quality-1"


class _DictStepCache:
    """A StepCache in a dict (the worker keeps it in the task ledger topic)."""

    def __init__(self) -> None:
        self.kept: dict[tuple[int, str], dict] = {}

    def get(self, step: int, candidate: str) -> dict | None:
        return self.kept.get((step, candidate))

    def put(self, step: int, candidate: str, record: dict) -> None:
        self.kept[(step, candidate)] = record


@pytest.mark.parametrize(("pattern", "kept_steps"), [("balanced", [(1, ""), (2, "")]),
                                                     ("quality", [(1, "1"), (3, "3")])])
async def test_a_run_again_reuses_the_answered_calls_and_does_not_charge_them_again(
        pattern: str, kept_steps: list[tuple[int, str]]) -> None:
    """A task cut short after some calls: its second attempt calls (and charges) only the others."""
    store = MemorySpendStore()
    runner = build_runner(RunnerConfig(quality_candidates=3), store=store)
    first_cache = _DictStepCache()
    first = await runner.run(_task(7, pattern=pattern, tenant="acme"), cache=first_cache)
    assert set(first_cache.kept) == {(o["step"], o["metadata"].get("candidate", "")) for o in first.outputs}
    paid_first = runner.ledger.tenant_spent("acme")
    assert paid_first == pytest.approx(first.result["cost_usd"])
    crashed = _DictStepCache()  # what the first attempt had kept when it was cut short
    crashed.kept = {k: first_cache.kept[k] for k in kept_steps}
    again = await runner.run(_task(7, pattern=pattern, tenant="acme"), cache=crashed)
    reused = [o for o in again.outputs if o["metadata"].get("reused") == "true"]
    assert sorted((o["step"], o["metadata"].get("candidate", "")) for o in reused) == kept_steps
    assert all(o["output"] == first_cache.kept[(o["step"], o["metadata"].get("candidate", ""))]["output"]
               for o in reused)
    fresh_cost = sum(o["cost_usd"] for o in again.outputs if o not in reused)
    assert runner.ledger.tenant_spent("acme") == pytest.approx(paid_first + fresh_cost)  # reused: not charged
    assert again.result["cost_usd"] == pytest.approx(sum(o["cost_usd"] for o in again.outputs))
    assert again.result["status"] == "ok" and again.result["steps"] == first.result["steps"]


async def test_a_replayed_task_runs_each_step_on_its_recorded_model() -> None:
    """`replay.model.<step>` in a task's metadata (a faithful replay) pins that step, whatever the routing."""
    runner = build_runner(RunnerConfig())
    routed = await runner.run(_task(2, pattern="balanced", optimization="cost"))
    recorded = {"replay.model.1": "simulator/quality-1", "replay.model.3": "simulator/balanced-1"}
    run = await runner.run(_task(2, pattern="balanced", optimization="cost", metadata=recorded))
    models = [o["model"] for o in run.outputs]
    assert models[0] == "simulator/quality-1" and models[2] == "simulator/balanced-1"
    assert models[1] == routed.outputs[1]["model"]  # a step without a recorded model is routed as before
    overridden = build_runner(RunnerConfig(pinned_model="simulator/fast-1"))
    assert {o["model"] for o in (await overridden.run(_task(2, pattern="balanced", metadata=recorded))).outputs} \
        == {"simulator/fast-1"}  # a model override wins
