"""The demo's pattern summary and the in-process half of the agent benchmark."""

from __future__ import annotations

from click.testing import CliRunner

from streams.bench_agents import litellm_call_rate
from streams.demo import load_sample_tasks
from streams.demo_swarm import pattern_summary
from streams.settings import Settings


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


async def test_litellm_call_rate_runs_the_worker_call_path() -> None:
    assert await litellm_call_rate(Settings(), calls=40, in_flight=10) > 0
