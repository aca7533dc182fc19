"""The demo's pattern summary and the in-process half of the agent benchmark."""

from __future__ import annotations

import gc
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner

from streams.bench.agents import litellm_call_rate
from streams.demo.run import load_sample_tasks
from streams.demo.swarm import pattern_summary
from streams.settings import Settings
from streams.worker import settle_heap


def test_the_sample_tasks_use_all_three_patterns() -> None:
    tasks = load_sample_tasks(20, "x")
    assert {t.get("pattern", "fast") for t in tasks} == {"fast", "balanced", "quality"}


def test_pattern_summary_has_a_line_per_pattern() -> None:
    results = {
        "a": {"metadata": {"pattern": "balanced", "agents": "planner,coder,reviewer"}, "steps": 3, "cost_usd": 0.01},
        "b": {"metadata": {"pattern": "quality", "agents": "coder,coder,coder,reviewer"}, "steps": 4,
              "cost_usd": 0.02},
    }
    import click

    @click.command()
    def show() -> None:
        pattern_summary(results)
    out = CliRunner().invoke(show).output
    assert "balanced    1 tasks, 3 steps each (planner,coder,reviewer)" in out
    assert "quality" in out and "fast" not in out


async def test_litellm_call_rate_runs_the_worker_call_path(tmp_path) -> None:
    """Every timed call went through the worker's runner and was answered; one that was not stops the bench
    (a rate of failures would be a number all the same)."""
    broken = tmp_path / "models.toml"
    broken.write_text('[[models]]\nname = "openai/down"\ninput_cost_per_token = 1e-6\noutput_cost_per_token = 1e-6\n'
                      'quality = 0.5\ncontext_window = 32768\n'
                      'litellm_params = { api_base = "http://127.0.0.1:9/v1", api_key = "none" }\n')
    try:
        default_gc, settled = await litellm_call_rate(Settings(), calls=40, in_flight=10)
        assert math.isfinite(default_gc) and math.isfinite(settled) and default_gc > 0 and settled > 0
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

        assert GLOBAL_LOGGING_WORKER.pending_count == 0  # the clock stopped after litellm's own logging ran
        with pytest.raises(RuntimeError, match=r"bench call \d+ ended failed: .*openai/down"):
            await litellm_call_rate(Settings(AGENTSTREAM_MODELS_FILE=broken, AGENTSTREAM_LLM_NUM_RETRIES=0),
                                    calls=4, in_flight=2)
    finally:  # settle_heap tunes this whole process; give the rest of the session the defaults back
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)


def test_settle_heap_freezes_what_is_loaded_and_collects_young_objects_less_often() -> None:
    before = gc.get_freeze_count()
    try:
        settle_heap()
        assert gc.get_freeze_count() > before
        assert gc.get_threshold()[0] > 700
    finally:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)


@pytest.mark.parametrize(("broker_ms", "runs"), [((2.6, 2.0, 1.2, 1.1, 1.1), 4),  # settles at the 4th run
                                                 ((2.6, 2.0, 1.9), 3),  # 2.0 -> 1.9: settled
                                                 ((2.6, 2.0, 1.2, 0.9, 0.6, 0.4), 4),  # never: at most four
                                                 ((0.0,), 1)])  # Kafka elsewhere: no broker to watch, one run
def test_the_bench_warms_up_until_the_brokers_cpu_stops_falling(monkeypatch: pytest.MonkeyPatch,
                                                                broker_ms: tuple[float, ...], runs: int) -> None:
    from streams.bench import pipeline
    from streams.bench.load import LoadRun

    made: list[LoadRun] = []

    def run(_settings: Settings, count: int, **_overrides: object) -> tuple[LoadRun, dict[str, object]]:
        broker_s = broker_ms[len(made)] * count / 1000
        made.append(LoadRun(count, {str(n): {} for n in range(count)}, {}, {}, 1.0, 4.0, 2.0, broker_s))
        return made[-1], {}

    monkeypatch.setattr(pipeline, "pipeline_run", run)
    pipeline._warm_up(Settings(), 10)
    assert len(made) == runs


async def test_a_workers_cpu_is_counted_until_it_goes_quiet() -> None:
    """Work a process does after its last answer (litellm's queued logging) is counted: the count waits for it."""
    from streams.bench.load import _cpu_until_idle, cpu_seconds

    busy = subprocess.Popen([sys.executable, "-c",
                             "import time\nend = time.process_time() + 1.5\nwhile time.process_time() < end: pass\n"
                             "time.sleep(30)"])
    try:
        start = cpu_seconds([busy.pid])
        used = await _cpu_until_idle([busy.pid], timeout_s=20.0) - start
        assert 1.0 <= used <= 2.5  # all of its 1.5 s of work (less what ran before `start`), then quiet
    finally:
        busy.kill()
        busy.wait()
