"""The commands a user types, run in-process against the session's real stack."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from streams.cli.main import cli
from streams.settings import Settings
from streams.topics import table_specs, topic_specs

pytestmark = pytest.mark.integration


def _run(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=settings.as_env(), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_status_lists_every_part_running(stack_settings: Settings) -> None:
    out = _run(stack_settings, "status")
    for part in ("kafka", "postgres", "redis"):
        line = next(line for line in out.splitlines() if line.startswith(part))
        assert line.endswith("running") and "127.0.0.1:" in line


def test_up_on_a_running_stack_is_a_no_op_that_creates_topics(isolated: Settings) -> None:
    first = _run(isolated, "up")
    created = len(topic_specs(isolated)) + len(table_specs(isolated))
    assert f"topics    {created} created" in first and first.count("running") >= 3
    assert "topics    all present" in _run(isolated, "up")


def test_submit_wait_file_and_tail(isolated: Settings, worker_factory, tmp_path) -> None:
    worker_factory()
    out = _run(isolated, "submit", "explain the retry policy", "--capability", "documentation",
               "--wait", "--timeout", "90")
    assert " ok  " in out and "simulator/" in out
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n".join(json.dumps({"description": f"task {n}", "pattern": "fast"}) for n in range(3)))
    assert "task-" in _run(isolated, "submit", "--file", str(tasks), "--wait", "--timeout", "90")
    lines = _run(isolated, "tail", "agent.results", "--from-beginning", "--count", "4", "--json").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4 and all(r["type"] == "TaskResult" and r["record"]["status"] == "ok" for r in records)
    readable = _run(isolated, "tail", "agent.tasks", "--from-beginning", "--count", "1")
    assert "TaskRequested task_id=task-" in readable


def test_tail_of_a_missing_topic_says_so(isolated: Settings) -> None:
    result = CliRunner().invoke(cli, ["tail", "no.such.topic", "--count", "1"], env=isolated.as_env())
    assert result.exit_code == 1 and "does not exist" in result.output


@pytest.mark.slow  # in make test-slow: make test stays under 15 minutes on 2 cores
def test_demo_prints_a_result_for_every_task_and_the_dead_letter(isolated: Settings) -> None:
    out = _run(isolated, "demo", "--tasks", "6", "--timeout", "120")
    assert "6/6 tasks have a result (6 ok)" in out
    assert "dead letter: stage=decode" in out and "agentstream tail agent.results" in out


@pytest.mark.slow  # make test-slow: make test stays under 15 min on 2 cores
def test_bench_prints_both_figures_and_their_ratio(isolated: Settings) -> None:
    out = _run(isolated, "bench", "--events", "2000", "--tasks", "40", "--agent-calls", "50", "--only", "pipeline")
    assert "raw aiokafka consume->produce" in out and "(2,000 x" in out
    assert "litellm solo (worker call path, no Kafka)" in out and "recall's share of worker CPU" in out
    solo = next(x for x in out.splitlines() if x.startswith("litellm solo"))
    assert " before the pipeline runs, " in solo and " after)" in solo  # measured on both sides of the runs
    warm_ups = [x for x in out.splitlines() if x.startswith("pipeline warm-up ")]
    assert warm_ups[0].startswith("pipeline warm-up 1 (not counted)") and 1 <= len(warm_ups) <= 4
    for recall in ("on ", "off"):  # each run answered every task, its CPU and the local broker's counted
        line = next(x for x in out.splitlines() if x.startswith(f"pipeline end to end, recall {recall}"))
        assert "; 40/40 tasks, 1 worker" in line and "worker CPU" in line
        assert float(line.split("worker CPU ")[1].split(" ms/task")[0]) > 0
        assert float(line.split("Kafka broker CPU ")[1].split(" ms/task")[0]) > 0
    prefetched = next(x for x in out.splitlines() if "recall with the prefetcher" in x)  # recall on only
    assert "of the worker's recalls read from L1" in prefetched and "the prefetcher's CPU" in prefetched
    assert "ratio pipeline / raw" in out
    assert "memory tiers" not in out and "agent swarms" not in out


@pytest.mark.slow
def test_bench_agent_figures_run_end_to_end(isolated: Settings) -> None:
    """The code path of `make bench`'s agent figures (a)-(c) at a tiny size; figures are not checked."""
    out = _run(isolated, "bench", "--events", "500", "--only", "agents", "--agent-calls", "50",
               "--agent-tasks", "40", "--no-two-workers")
    assert "(a) litellm call path in process" in out and "(a') " in out
    assert "(40/40; peak" in out and "(c) pipeline overhead at" in out and "(d)" not in out
