"""Replay without a stack: bounds, the judge, run files, paired statistics, text and HTML reports."""

from __future__ import annotations

import re

import pytest

from agents.judging import Candidate, Verdict
from agents.simulator import install_simulator
from streams.client import Received
from streams.replay.compare import compare_runs, output_diff, paired_interval, prompt_summary, render_text
from streams.replay.html import render_html
from streams.replay.range import Bound, parse_bound
from streams.replay.run import ReplaySpec, eval_settings, make_judge, prepare_tasks
from streams.replay.store import Run, TaskRow, load_run, run_dir, save_run
from streams.settings import Settings


def test_bounds_parse_offsets_times_and_words() -> None:
    assert parse_bound("42") == Bound("offset", 42)
    assert parse_bound("now") == Bound("now") and parse_bound("earliest") == Bound("earliest")
    assert parse_bound("2026-01-02T03:04:05Z") == Bound("time", 1767323045000)
    assert parse_bound("2026-01-02T03:04:05") == parse_bound("2026-01-02T03:04:05+00:00")
    assert str(Bound("time", 1767323045000)) == "2026-01-02T03:04:05+00:00" and str(Bound("offset", 3)) == "3"
    with pytest.raises(ValueError, match="ISO timestamp"):
        parse_bound("last tuesday")


async def test_the_replay_judge_is_deterministic_pinned_and_skips_empty_answers() -> None:
    install_simulator()
    judge = make_judge(Settings())

    async def grade(description: str, output: str) -> Verdict:
        task = {"task_id": "t-1", "description": description}
        return (await judge.judge(task, [Candidate("t-1", output)])).verdicts[0]

    first = await grade("write a parser", "1. read the module")
    again = await grade("write a parser", "1. read the module")
    other = await grade("write a parser", "something else entirely")
    assert first == again and 0 < first.score <= 1 and first.parsed and first.model == "simulator/quality-1"
    assert first.cost_usd > 0 and other.reason != first.reason
    empty = await grade("x", "  ")
    assert empty.score == 0.0 and not empty.passed and empty.cost_usd == 0.0
    with pytest.raises(ValueError, match="not in the model table"):
        make_judge(Settings(), "openai/gpt-nothing")


def _row(tid: str, score: float, cost: float, out: str = "same", status: str = "ok") -> TaskRow:
    return TaskRow(tid, f"task {tid}", status, out, "m", score, cost, 10.0 + score)


def test_paired_interval_is_reproducible_and_brackets_the_mean() -> None:
    a = [0.5, 0.6, 0.7, 0.4, 0.55, 0.65]
    b = [x + 0.1 + (0.01 * i) for i, x in enumerate(a)]
    one = paired_interval("score", a, b)
    assert one == paired_interval("score", a, b)  # fixed seed
    assert one.low <= one.mean_diff <= one.high and one.low > 0 and one.significant
    flat = paired_interval("score", [0.5, 0.6], [0.6, 0.5])
    assert flat.mean_diff == 0 and not flat.significant
    assert paired_interval("cost_usd", [], []).n == 0


def test_compare_pairs_ok_tasks_and_reports_differences(tmp_path) -> None:
    a = Run("A", {}, [_row("t1", 0.5, 2e-6, "x\ny"), _row("t2", 0.6, 2e-6), _row("t3", 0.7, 2e-6, status="failed"),
                      _row("t4", 0.1, 1e-6)])
    b = Run("B", {}, [_row("t1", 0.8, 1e-6, "x\nz"), _row("t2", 0.6, 1e-6), _row("t3", 0.9, 1e-6),
                      _row("t5", 0.9, 1e-6)])
    c = compare_runs(a, b)
    assert [p.task_id for p in c.pairs] == ["t1", "t2"] and c.changed == 1
    assert c.only_a == ["t3", "t4"] and c.only_b == ["t3", "t5"]
    score = c.intervals[0]
    assert score.metric == "score" and score.mean_diff == pytest.approx(0.15)
    assert output_diff(c.pairs[0], "A", "B")[-2:] == ["-y", "+z"] and output_diff(c.pairs[1]) == []
    text = "\n".join(render_text(c, rows=1, diffs=1))
    assert "2 tasks paired, 1 with a different output" in text and "... 1 more" in text and "+z" in text
    html = render_html(c)
    assert html.startswith("<!doctype html>") and html.count("<svg") == 5 and "&lt;" not in html.split("<body>")[0]
    assert not re.search(r"(src|href)=", html)  # self-contained: nothing to fetch


def test_the_reports_say_which_prompt_versions_answered() -> None:
    a = Run("A", {}, [_row("t1", 0.5, 1e-6, "x"), _row("t2", 0.5, 1e-6)])
    b = Run("B", {}, [TaskRow("t1", "d", "ok", "y", "m", 0.7, 2e-6, 1.0, prompt="coding=2"), _row("t2", 0.5, 1e-6)])
    a.rows[0] = TaskRow("t1", "d", "ok", "x", "m", 0.5, 1e-6, 1.0, prompt="coding=1")
    c = compare_runs(a, b)
    assert prompt_summary(c) == "prompt versions: A coding=1 x1; B coding=2 x1"
    assert prompt_summary(c) in render_text(c) and "coding=1 / coding=2" in render_html(c)
    plain = Run("C", {}, [_row("t1", 0.5, 1e-6), _row("t2", 0.5, 1e-6)])
    assert prompt_summary(compare_runs(plain, b)) == "prompt versions: A built-in prompts; B coding=2 x1"
    assert prompt_summary(compare_runs(plain, plain)) == "" and "prompt versions" not in render_text(
        compare_runs(plain, plain))


def test_runs_round_trip_and_names_are_checked(tmp_path) -> None:
    settings = Settings(AGENTSTREAM_DATA_DIR=tmp_path)
    run = Run("r1", {"model": "m"}, [_row("t1", 0.5, 1e-6)])
    save_run(settings, run)
    assert load_run(settings, "r1") == run
    with pytest.raises(ValueError, match="bad run name"):
        run_dir(settings, "../escape")
    with pytest.raises(FileNotFoundError, match="no replay run named"):
        load_run(settings, "absent")


async def test_overrides_are_applied_to_every_replayed_task_once() -> None:
    task = {"task_id": "t1", "description": "d", "pattern": "fast", "metadata": {"k": "v"}}
    records = [Received("agent.tasks", 0, 5, b"t1", "TaskRequested", task, None),
               Received("agent.tasks", 1, 9, b"t1", "TaskRequested", task, None),  # redelivered copy
               Received("agent.tasks", 0, 6, b"x", None, None, "bad bytes")]
    spec = ReplaySpec(name="r", start=Bound("earliest"), end=Bound("now"), pattern="quality",
                      prompts=("coder=v2",))
    (out,) = prepare_tasks(records, spec)
    assert out["pattern"] == "quality" and task["pattern"] == "fast"
    assert out["metadata"] == {"k": "v", "replay_run": "r", "replay_of": "agent.tasks:0:5", "prompt.coder": "v2"}
    base = Settings(AGENTSTREAM_TOPIC_PREFIX="p.", AGENTSTREAM_APP_ID="app")
    ev = eval_settings(base, "r", "simulator/fast-1")
    assert (ev.topic_prefix, ev.app_id, ev.model) == ("p.eval-r.", "app-eval-r", "simulator/fast-1")
    assert base.judge_enabled and not ev.judge_enabled  # a replay never feeds production's experiments
    assert eval_settings(base.model_copy(update={"model": "simulator/quality-1"}), "r").model is None  # as recorded


def test_recorded_models_pin_steps_only_without_a_model_or_pattern_override() -> None:
    task = {"task_id": "t1", "description": "d", "pattern": "balanced", "metadata": {}}
    records = [Received("agent.tasks", 0, 5, b"t1", "TaskRequested", task, None)]
    models = {"t1": {1: "simulator/fast-1", 2: "simulator/quality-1"}}
    spec = ReplaySpec(name="r", start=Bound("earliest"), end=Bound("now"))
    (out,) = prepare_tasks(records, spec, models)
    assert out["metadata"]["replay.model.1"] == "simulator/fast-1"
    assert out["metadata"]["replay.model.2"] == "simulator/quality-1"
    for other in (ReplaySpec(name="r", start=Bound("earliest"), end=Bound("now"), model="simulator/fast-1"),
                  ReplaySpec(name="r", start=Bound("earliest"), end=Bound("now"), pattern="quality")):
        (out,) = prepare_tasks(records, other, models)
        assert not [k for k in out["metadata"] if k.startswith("replay.model.")]


def test_the_replay_demo_self_check_says_why_it_fails() -> None:
    from streams.demo.replay import self_check

    production = Run("production:a..b", {"missing": 0}, [_row("t1", 0.5, 0.1, "x"), _row("t2", 0.5, 0.1, "y")])
    same = Run("demo-v1", {"missing": 0}, [_row("t1", 0.5, 0.1, "x"), _row("t2", 0.5, 0.1, "y")])
    assert self_check(production, compare_runs(production, same)) is None
    other = Run("demo-v1", {"missing": 0}, [_row("t1", 0.5, 0.1, "x"), _row("t2", 0.5, 0.1, "z")])
    why = self_check(production, compare_runs(production, other))
    assert why is not None and why.startswith("1/2 replayed answers differ from production's; e.g. t2")
    short = Run("demo-v1", {"missing": 1}, [_row("t1", 0.5, 0.1, "x"), _row("t2", 0, 0, "", status="missing")])
    assert "not answered ok in both runs: t2" in self_check(production, compare_runs(production, short))


async def test_replayed_tasks_reach_the_judge_and_the_run_files_redacted(tmp_path) -> None:
    import random

    from redaction_corpus import secrets

    from agents.judging import SimulatedJudge
    from streams.replay.run import _judge_rows

    (_, text, secret), (_, meta_text, meta_secret), (_, out_text, out_secret) = secrets(random.Random(7))[:3]
    task = {"task_id": "t1", "description": f"fix: {text}", "pattern": "fast", "metadata": {"env": meta_text}}
    spec = ReplaySpec(name="r", start=Bound("earliest"), end=Bound("now"))
    tasks = prepare_tasks([Received("agent.tasks", 0, 5, b"t1", "TaskRequested", task, None)], spec)
    seen: list[object] = []

    class Recording(SimulatedJudge):
        async def judge(self, task, candidates):  # what the judge is given
            seen.append((task, candidates))
            return await super().judge(task, candidates)

    result = {"status": "ok", "output": f"done; {out_text}", "model": "m", "cost_usd": 0.0, "latency_ms": 1.0}
    rows = await _judge_rows(Recording(), tasks, {"t1": result})
    settings = Settings(AGENTSTREAM_DATA_DIR=tmp_path)
    folder = save_run(settings, Run("r", {}, rows))
    written = (folder / "results.jsonl").read_text()
    for leaked in (secret, meta_secret, out_secret):
        assert leaked not in str(tasks) and leaked not in str(seen) and leaked not in written
    assert "[REDACTED:" in written


def test_recorded_memories_are_pinned_unless_fresh_memory_is_asked() -> None:
    from agents.runner import RECORDED_MEMORIES, recorded_memory_ids

    tasks = [{"task_id": t, "description": "d", "metadata": {}} for t in ("t1", "t2", "t3")]
    records = [Received("agent.tasks", 0, n, t["task_id"].encode(), "TaskRequested", t, None)
               for n, t in enumerate(tasks)]
    memories = {"t1": "TaskResult:old-1,TaskResult:acme/old-2", "t2": ""}  # t3: production has no output of it
    spec = ReplaySpec(name="r", start=Bound("earliest"), end=Bound("now"), model="simulator/fast-1")
    one, two, three = prepare_tasks(records, spec, None, memories)  # with --model too: a comparison changes one thing
    assert recorded_memory_ids(one) == ["TaskResult:old-1", "TaskResult:acme/old-2"]
    assert recorded_memory_ids(two) == [] and RECORDED_MEMORIES in two["metadata"]  # recalled nothing: recall nothing
    assert recorded_memory_ids(three) is None  # nothing recorded: search as usual
    fresh = ReplaySpec(name="r", start=Bound("earliest"), end=Bound("now"), fresh_memory=True)
    assert all(recorded_memory_ids(t) is None for t in prepare_tasks(records, fresh, None, memories))
    assert eval_settings(Settings(AGENTSTREAM_TOPIC_PREFIX="p."), "r").memory_scope == "p."  # production's tiers
