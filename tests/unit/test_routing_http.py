"""Routing against a local OpenAI-compatible server that answers slowly, with 429, with 500, or never."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from fake_openai import FakeOpenAI

from agents.factory import RunnerConfig, build_runner
from agents.models import ModelInfo


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    srv = FakeOpenAI().start()
    yield srv
    srv.stop()


def _models(srv: FakeOpenAI, *names_quality: tuple[str, float]) -> tuple[ModelInfo, ...]:
    return tuple(ModelInfo(f"openai/{name}", 1e-6, 2e-6, quality=q, context_window=65536,
                           litellm_params={"api_base": srv.url, "api_key": "test-key"})
                 for name, q in names_quality)


def _task(**fields: object) -> dict:
    return {"task_id": "h-1", "description": "add a cache", "created_at": 1, "optimization": "quality", **fields}


async def test_a_rate_limited_model_is_retried_with_backoff_then_the_next_one_answers(server: FakeOpenAI) -> None:
    server.behaviours = {"limited": "429", "backup": "ok"}
    models = _models(server, ("limited", 0.9), ("backup", 0.5))
    runner = build_runner(RunnerConfig(num_retries=2, retry_backoff_s=0.05, timeout_s=10), models=models)
    run = await runner.run(_task())
    (out,) = run.outputs
    assert out["status"] == "ok" and out["model"] == "openai/backup" and out["attempt"] == 2
    assert "openai/limited: rate_limited" in out["metadata"]["failed_models"]
    assert out["metadata"]["fallback"] == "true"
    hits = server.times("limited")
    assert len(hits) == 3  # the first try and two retries (agents/routing.py)
    gaps = [b - a for a, b in itertools.pairwise(hits)]
    assert all(g >= 0.04 for g in gaps)  # it waited before each retry (no timing upper bound asserted)
    assert run.result["model"] == "openai/backup" and run.result["cost_usd"] == pytest.approx(20 * 1e-6 + 10 * 2e-6)


async def test_a_5xx_that_recovers_is_retried_on_the_same_model(server: FakeOpenAI) -> None:
    server.behaviours = {"flaky": ["500", "ok"]}
    runner = build_runner(RunnerConfig(num_retries=2, retry_backoff_s=0.05), models=_models(server, ("flaky", 0.9)))
    run = await runner.run(_task())
    assert run.outputs[0]["status"] == "ok" and run.outputs[0]["model"] == "openai/flaky"
    assert len(server.times("flaky")) == 2


async def test_a_timeout_is_a_timeout_and_every_failure_is_recorded(server: FakeOpenAI) -> None:
    server.behaviours = {"silent": "hang", "broken": "500"}
    models = _models(server, ("silent", 0.9), ("broken", 0.5))
    runner = build_runner(RunnerConfig(num_retries=0, timeout_s=0.5), models=models)
    run = await runner.run(_task())
    (out,) = run.outputs
    failed = out["metadata"]["failed_models"]
    assert "openai/silent: timeout" in failed and "openai/broken: server_error" in failed
    assert out["status"] == "failed" and run.result["status"] == "failed"
    only_silent = build_runner(RunnerConfig(num_retries=0, timeout_s=0.5), models=models[:1])
    timed_out = await only_silent.run(_task())
    assert timed_out.outputs[0]["status"] == "timeout" and "Timeout" in timed_out.result["error"]


async def test_speed_routing_learns_from_observed_latency(server: FakeOpenAI) -> None:
    server.behaviours = {"sluggish": "slow:0.3", "quick": "ok"}
    models = _models(server, ("sluggish", 0.5), ("quick", 0.9))  # the prior favours the lower quality
    runner = build_runner(RunnerConfig(), models=models)
    for model in models:
        await runner.router.call(model, [{"role": "user", "content": "warm"}])
    run = await runner.run(_task(optimization="speed"))
    assert run.outputs[0]["model"] == "openai/quick"
