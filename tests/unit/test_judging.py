"""The judge interface: both judges, lenient parsing, and the model judge on the step path (router, budget,
redaction), through the real litellm path with the offline simulator (and small custom providers) answering."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from litellm import CustomLLM, ModelResponse

from agents.budget import BudgetLedger, MemorySpendStore, TaskBudget
from agents.factory import RunnerConfig, build_judge, build_runner
from agents.judging import (
    JUDGE_MARKER,
    Candidate,
    Judge,
    ModelJudge,
    SimulatedJudge,
    Verdict,
    experiment_outcome,
    judge_prompt,
    parse_scores,
)
from agents.models import SIMULATOR_MODELS, ModelInfo
from agents.simulator import PROVIDER, SimulatorLLM, install_simulator
from agents.swarm import StepContext

A20 = "Ab3dEf6hIj9kLm2nOp5q"
TASK = {"task_id": "t-1", "description": "add a cache to the user lookup", "tenant": "acme"}


class RecordingSimulator(SimulatorLLM):
    """The simulator, keeping every prompt it was sent (what left the process)."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[str] = []

    def _answer(self, model: str, messages: list[dict[str, Any]]) -> tuple[ModelResponse, float]:
        self.prompts.append("\n".join(str(m.get("content") or "") for m in messages))
        return super()._answer(model, messages)


class CannedLLM(CustomLLM):
    """A provider that answers every request with the same text (a judge that does not follow the format)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        return ModelResponse(model=model, choices=[{"index": 0, "finish_reason": "stop",
                                                    "message": {"role": "assistant", "content": self.text}}],
                             usage={"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45})


def _provide(name: str, handler: CustomLLM) -> None:
    litellm.custom_provider_map = [*(p for p in litellm.custom_provider_map if p.get("provider") != name),
                                   {"provider": name, "custom_handler": handler}]


@pytest.fixture(autouse=True)
def simulator() -> Iterator[None]:
    install_simulator()
    yield
    litellm.custom_provider_map = [p for p in litellm.custom_provider_map if p.get("provider") == PROVIDER]
    install_simulator()


@pytest.fixture
def recording() -> RecordingSimulator:
    handler = RecordingSimulator()
    _provide(PROVIDER, handler)
    return handler


def _canned(text: str) -> tuple[ModelInfo, ...]:
    _provide("canned", CannedLLM(text))
    return (ModelInfo("canned/judge", 1e-6, 2e-6, quality=0.5, context_window=32768),)


# --- parsing ---

def test_scores_are_read_from_candidate_lines_on_any_common_scale() -> None:
    text = "Candidate 1: 7\ncandidate #2 = 7.5/10\ncandidate 3 - 85%\ncandidate 4: 85\ncandidate 9: 3\nCANDIDATE 1: 8"
    assert parse_scores(text, 4) == {1: 0.8, 2: 0.75, 3: 0.85, 4: 0.85}  # the last line for 1 wins; 9 is out
    assert parse_scores("candidate 1: 12/10\ncandidate 2: 3/0", 2) == {1: 1.0}  # capped; a zero scale is no score


def test_a_single_candidate_may_be_scored_by_its_last_percentage() -> None:
    assert parse_scores("a 10% guess\nscore: 87%", 1) == {1: 0.87}
    assert parse_scores("score: 250%", 1) == {1: 1.0}
    assert parse_scores("no number", 1) == {} and parse_scores("a 10% guess", 2) == {}


def test_the_request_numbers_the_candidates_and_carries_the_marker() -> None:
    prompt = judge_prompt("sort a list", ["one", "two"])
    assert prompt.startswith("Task: sort a list") and JUDGE_MARKER in prompt
    assert "### Candidate 1\none" in prompt and "### Candidate 2\ntwo" in prompt


def test_a_verdict_score_is_a_share() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Verdict("a", 1.5, True, "too good")


# --- the model judge ---

async def test_the_model_judge_grades_each_candidate_in_one_routed_call() -> None:
    judge: Judge = build_judge(RunnerConfig(pinned_model="simulator/quality-1"))
    cands = [Candidate("a", "1. read the module"), Candidate("b", "2. write a test"), Candidate("c", "  ")]
    first = await judge.judge(TASK, cands)
    assert first.verdicts == (await judge.judge(TASK, cands)).verdicts  # deterministic: same request, same grades
    a, b, c = first.verdicts
    assert [v.candidate_id for v in first.verdicts] == ["a", "b", "c"] and first.of("b") == b
    assert a.parsed and b.parsed and 0 < a.score <= 1 and a.passed == (a.score >= 0.5)
    assert a.model == b.model == "simulator/quality-1" and a.cost_usd == b.cost_usd > 0
    assert (c.score, c.passed, c.model, c.cost_usd, c.reason) == (0.0, False, "", 0.0, "empty answer")
    call = first.call
    assert call is not None and call.record["metadata"]["judged"] == "a,b" and call.record["agent"] == "reviewer"
    assert first.cost_usd == pytest.approx(call.record["cost_usd"])
    nothing = await judge.judge(TASK, [Candidate("x", "")])
    assert nothing.call is None and nothing.verdicts[0].reason == "empty answer"
    with pytest.raises(ValueError, match="unique"):
        await judge.judge(TASK, [Candidate("a", "x"), Candidate("a", "y")])


async def test_an_answer_without_scores_is_unparsed_verdicts_not_an_exception() -> None:
    judge = build_judge(RunnerConfig(num_retries=0), models=_canned("They all look fine to me. candidate 2: 9"))
    judgement = await judge.judge(TASK, [Candidate("a", "one"), Candidate("b", "two")])
    a, b = judgement.verdicts
    assert not a.parsed and a.score == 0.0 and not a.passed
    assert a.reason.startswith("unparsed: no score for candidate 1")
    assert b.parsed and b.score == 0.9 and b.passed and b.model == "canned/judge" and a.cost_usd > 0
    assert await experiment_outcome(judge, {"output_id": "o", "task_id": "t", "status": "ok", "output": "x",
                                            "created_at": 1, "metadata": {"experiment": "e", "variant": "v1"}},
                                    {}) is None  # an ungraded output is no evidence for an experiment


async def test_a_judge_model_that_fails_falls_back_along_the_chain_and_else_gives_unparsed_verdicts() -> None:
    broken = ModelInfo("openai/broken", 1e-7, 1e-7, quality=0.99, context_window=32768,
                       litellm_params={"api_base": "http://127.0.0.1:9/v1", "api_key": "none"})
    table = (broken, *SIMULATOR_MODELS)
    judge = build_judge(RunnerConfig(num_retries=0, pinned_model="openai/broken"), models=table)
    fell_back = await judge.judge(TASK, [Candidate("a", "one")])
    assert fell_back.verdicts[0].parsed and fell_back.verdicts[0].model.startswith("simulator/")
    assert "openai/broken" in fell_back.call.record["metadata"]["failed_models"]
    alone = build_judge(RunnerConfig(num_retries=0), models=(broken,))
    failed = await alone.judge(TASK, [Candidate("a", "one")])
    (verdict,) = failed.verdicts
    assert not verdict.parsed and verdict.score == 0.0 and verdict.reason.startswith("the judge did not answer")
    assert failed.call is not None and failed.call.text is None and failed.call.record["status"] == "failed"


async def test_secrets_in_the_task_or_a_candidate_never_reach_the_model(recording: RecordingSimulator) -> None:
    key = "sk-" + "proj-" + A20 + A20
    aws = "AK" + "IA" + "ABCDEFGHIJ234567"
    judge = build_judge(RunnerConfig(pinned_model="simulator/quality-1"))
    judgement = await judge.judge({**TASK, "description": f"rotate {aws}"},
                                  [Candidate("a", f"use the key {key} here"), Candidate("b", "no secret")])
    (prompt,) = recording.prompts
    assert JUDGE_MARKER in prompt and "### Candidate 2\nno secret" in prompt
    assert key not in prompt and aws not in prompt and "[REDACTED:openai_key]" in prompt
    assert all(v.parsed for v in judgement.verdicts) and key not in str(judgement)


async def test_judging_is_charged_to_the_tenant_and_refused_when_the_budget_cannot_afford_it() -> None:
    ledger = BudgetLedger(MemorySpendStore())
    judge = build_judge(RunnerConfig(pinned_model="simulator/quality-1"), ledger=ledger)
    judgement = await judge.judge(TASK, [Candidate("a", "one"), Candidate("b", "two")])
    assert judgement.cost_usd > 0 and ledger.tenant_spent("acme") == pytest.approx(judgement.cost_usd)
    poor = build_judge(RunnerConfig(tenant_daily_budget_usd=1e-9), ledger=BudgetLedger(MemorySpendStore(), 1e-9))
    refused = await poor.judge(TASK, [Candidate("a", "one")])
    assert refused.call.record["status"] == "budget_exceeded" and refused.verdicts[0].cost_usd == 0.0
    assert not refused.verdicts[0].parsed and "budget exceeded" in refused.verdicts[0].reason


async def test_inside_a_run_the_judge_spends_from_the_runs_budget_as_its_step() -> None:
    runner = build_runner(RunnerConfig())
    judge = ModelJudge(runner.steps, runner.registry.for_capability("judging"))
    ctx = StepContext(dict(TASK), TaskBudget(1.0), "quality")
    judgement = await judge.judge(ctx, [Candidate("1", "one")], step=4)
    record = judgement.call.record
    assert record["step"] == 4 and record["output_id"] == "t-1:4:1" and record["metadata"]["pattern"] == "quality"
    assert record["cost_usd"] > 0 and ctx.budget.spent == pytest.approx(record["cost_usd"])


async def test_the_quality_pattern_ranks_unparsed_candidates_last() -> None:
    coder_only = dataclasses.replace(SIMULATOR_MODELS[0], capabilities=frozenset({"coding"}))
    judge_model = dataclasses.replace(_canned("candidate 2: 4")[0], capabilities=frozenset({"judging"}))
    run = await build_runner(RunnerConfig(quality_candidates=3), models=(coder_only, judge_model)).run(
        {**TASK, "pattern": "quality", "capability": "coding", "created_at": 1})
    candidates, judge = run.outputs[:3], run.outputs[3]
    assert [c["metadata"]["score"] for c in candidates] == ["", "0.4", ""]
    assert candidates[1]["metadata"]["winner"] == "true" and run.result["metadata"]["winner_step"] == "2"
    assert judge["metadata"]["scores"] == "2:0.4" and judge["metadata"]["unparsed"] == "1,3"
    assert judge["model"] == "canned/judge" and run.result["status"] == "ok"


# --- the simulated judge ---

async def test_the_simulated_judge_follows_simulated_success_deterministically() -> None:
    judge: Judge = SimulatedJudge()
    good = [Candidate(f"o{i}", "", {"simulated_success": "0.8"}) for i in range(2000)]
    poor = [Candidate(f"o{i}", "", {"simulated_success": 0.2}) for i in range(2000)]
    plain = [Candidate(f"o{i}", "") for i in range(2000)]
    g, p, d = [await judge.judge(TASK, c) for c in (good, poor, plain)]
    assert g == await judge.judge(TASK, good) and g.call is None and g.cost_usd == 0.0
    rate = {name: sum(v.passed for v in j.verdicts) / 2000 for name, j in (("g", g), ("p", p), ("d", d))}
    assert 0.76 < rate["g"] < 0.84 and 0.16 < rate["p"] < 0.24 and 0.46 < rate["d"] < 0.54
    assert all(v.parsed and v.model == "" and (v.score >= 0.5) == v.passed for v in g.verdicts)
    # the same id succeeds at a higher probability whenever it succeeds at a lower one
    assert all(vp.passed <= vg.passed for vp, vg in zip(p.verdicts, g.verdicts, strict=True))
