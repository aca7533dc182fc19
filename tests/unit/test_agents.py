"""The LLM side through the real litellm path, with the offline simulator as the only provider."""

from __future__ import annotations

import time

import pytest
from fake_openai import FakeOpenAI  # tests/fake_openai.py (tests/ is on sys.path via its conftest)

from agents.factory import RunnerConfig, build_runner
from agents.models import SIMULATOR_MODELS, ModelInfo, register_models
from agents.routing import ModelRouter
from agents.simulator import install_simulator


@pytest.fixture(autouse=True)
def simulator() -> None:
    install_simulator()
    register_models()


def _task(**fields: object) -> dict:
    return {"task_id": "t-1", "description": "add a cache to the user lookup", "created_at": 1, **fields}


def _model(name: str) -> ModelInfo:
    return next(m for m in SIMULATOR_MODELS if m.name == name)


async def test_simulator_is_deterministic_and_depends_on_the_input() -> None:
    router = ModelRouter(SIMULATOR_MODELS)
    msgs = [{"role": "user", "content": "add a cache"}]
    a = await router.call(_model("simulator/fast-1"), msgs)
    b = await router.call(_model("simulator/fast-1"), msgs)
    c = await router.call(_model("simulator/fast-1"), [{"role": "user", "content": "remove the cache"}])
    d = await router.call(_model("simulator/quality-1"), msgs)
    assert a.text == b.text and a.tokens_in == b.tokens_in
    assert a.text != c.text and a.text != d.text
    assert "add a cache" in a.text


async def test_cost_comes_from_the_model_table() -> None:
    info = _model("simulator/quality-1")
    c = await ModelRouter(SIMULATOR_MODELS).call(info, [{"role": "user", "content": "x" * 400}])
    expected = c.tokens_in * info.input_cost_per_token + c.tokens_out * info.output_cost_per_token
    assert c.cost_usd == pytest.approx(expected)
    assert c.cost_usd > 0 and c.tokens_in == 100


async def test_latency_setting_is_honoured() -> None:
    install_simulator(latency_ms=120)
    started = time.perf_counter()
    c = await ModelRouter(SIMULATOR_MODELS).call(_model("simulator/fast-1"), [{"role": "user", "content": "slow"}])
    assert time.perf_counter() - started >= 0.11
    assert c.latency_ms >= 110


async def test_runner_picks_the_agent_by_capability_and_sums_the_result() -> None:
    config = RunnerConfig()
    runner = build_runner(config)
    runner._now = runner.steps._now = lambda: 42
    run = await runner.run(_task(capability="review"))
    (out,) = run.outputs
    assert out["agent"] == "reviewer" and out["status"] == "ok" and out["output_id"] == "t-1:1:1"
    assert run.result["status"] == "ok" and run.result["created_at"] == 42
    assert run.result["cost_usd"] == out["cost_usd"] and run.result["tokens_out"] == out["tokens_out"]
    assert run.result["output"] == out["output"]


async def test_a_failing_model_is_a_failed_result_not_an_exception() -> None:
    broken = (ModelInfo("openai/model-x", 1e-6, 1e-6, quality=0.5, context_window=32768,
                        litellm_params={"api_base": "http://127.0.0.1:9/v1", "api_key": "none"}),)
    run = await build_runner(RunnerConfig(num_retries=0), models=broken).run(_task())
    assert run.outputs[0]["status"] == "failed"
    assert run.result["status"] == "failed" and run.result["error"]
    assert "openai/model-x" in run.outputs[0]["metadata"]["failed_models"]


async def test_real_providers_are_unreachable_in_tests() -> None:
    """The test-wide guard (tests/conftest.py): a model call to any host but this machine's own name goes
    to a closed proxy port. An OpenAI-compatible server on 127.0.0.2 (a loopback address outside
    NO_PROXY, so reached like a provider's host) answers any call that gets through: none may."""
    server = FakeOpenAI(host="127.0.0.2").start()
    try:
        for base in (server.url, None):  # the server; a real provider's default address, with a key set
            real = ModelInfo("openai/gpt-4o-mini", 1e-7, 1e-7, quality=0.5,
                             litellm_params={"api_key": "sk-not-a-real-key", **({"api_base": base} if base else {})})
            with pytest.raises(Exception, match="Connection error"):  # refused: not answered, not a 401
                await ModelRouter((real,), timeout_s=5, num_retries=0).call(real, [{"role": "user", "content": "hi"}])
    finally:
        server.stop()
    assert server.hits == []
