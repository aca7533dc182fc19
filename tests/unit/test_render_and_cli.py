from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from streams.cli.main import cli
from streams.cli.render import render_received
from streams.client import Received, make_task


def test_make_task_fills_id_and_time_and_keeps_given_fields() -> None:
    t = make_task("hello", pattern="quality", budget_usd=None)
    assert t["task_id"].startswith("task-") and t["created_at"] > 1_600_000_000_000
    assert t["pattern"] == "quality" and "budget_usd" not in t
    assert make_task("x", task_id="fixed")["task_id"] == "fixed"


def test_render_readable_and_json() -> None:
    ok = Received("agent.results", 1, 5, b"t1", "TaskResult",
                  {"task_id": "t1", "status": "ok", "model": "m", "cost_usd": 0.5, "latency_ms": 1.0,
                   "output": "line one\nline two"}, None)
    line = render_received(ok, as_json=False)
    assert line.startswith("agent.results[1]@5 TaskResult task_id=t1 status=ok") and "\n" not in line
    assert json.loads(render_received(ok, as_json=True))["record"]["output"] == "line one\nline two"
    bad = Received("agent.tasks", 0, 9, None, "DeadLetter", {"payload": b"\xff", "stage": "decode"}, None)
    assert json.loads(render_received(bad, as_json=True))["record"]["payload"] == "/w=="
    broken = Received("agent.tasks", 0, 3, None, None, None, "bad marker")
    assert "UNDECODABLE: bad marker" in render_received(broken, as_json=False)


@pytest.mark.parametrize("command", ["up", "down", "status", "worker", "submit", "tail", "demo", "bench", "settings",
                                     "control", "alerts", "risk"])
def test_every_command_explains_itself(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output and len(result.output.splitlines()) > 3


def test_settings_command_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:topsecret@cache:6379/0")
    result = CliRunner().invoke(cli, ["settings"])
    assert result.exit_code == 0 and "topsecret" not in result.output and "redis://:***@cache" in result.output


def test_bad_environment_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTREAM_PARTITIONS", "many")
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code != 0 and "AGENTSTREAM_PARTITIONS" in result.output


def test_submit_needs_text_or_file() -> None:
    result = CliRunner().invoke(cli, ["submit"])
    assert result.exit_code == 2 and "give the task as TEXT, or --file FILE" in result.output


def test_submit_rejects_a_bad_jsonl_line(tmp_path) -> None:
    f = tmp_path / "tasks.jsonl"
    f.write_text('{"description": "ok"}\n{"no_description": 1}\n')
    result = CliRunner().invoke(cli, ["submit", "--file", str(f)])
    assert result.exit_code == 1 and "tasks.jsonl:2" in result.output


# Nothing listens on port 9: a submit that got as far as producing would fail on Kafka, not on validation.
_DOWN = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}


@pytest.mark.parametrize(("args", "says"), [
    (["add a cache", "--budget", "nan"], "budget_usd nan is not allowed: a finite number >= 0"),
    (["add a cache", "--budget", "-1"], "budget_usd -1.0 is not allowed"),
    (["   "], "description '   ' is not allowed: a non-empty text"),
])
def test_submit_refuses_an_invalid_task_before_producing(args: list[str], says: str) -> None:
    result = CliRunner().invoke(cli, ["submit", *args], env=_DOWN)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: nothing submitted, the task is invalid: ") and says in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert "Kafka" not in result.output


def test_submit_refuses_a_file_with_one_invalid_task(tmp_path) -> None:
    f = tmp_path / "tasks.jsonl"
    f.write_text('{"description": "fine"}\n{"description": "typo", "pattern": "qualty", "task_id": "t2"}\n'
                 '{"description": "fine too", "optimization": "cheapest-ever"}\n')
    result = CliRunner().invoke(cli, ["submit", "--file", str(f)], env=_DOWN)
    assert result.exit_code == 1 and "Kafka" not in result.output
    assert "nothing submitted, task 2 of 3 (t2) is invalid: pattern 'qualty' is not allowed: one of fast, " \
           "balanced, quality" in result.output


def test_submit_looks_an_unknown_capability_up_in_the_prompt_registry() -> None:
    off = CliRunner().invoke(cli, ["submit", "x", "--capability", "juggling"],
                             env={**_DOWN, "AGENTSTREAM_PROMPTS_ENABLED": "false"})
    assert off.exit_code == 1 and "capability 'juggling' is not allowed: one of coding" in off.output
    down = CliRunner().invoke(cli, ["submit", "x", "--capability", "juggling"], env=_DOWN)
    assert down.exit_code == 1 and "Kafka" not in down.output
    assert "capability 'juggling' is not a built-in one, and the prompt registry" in down.output


@pytest.mark.parametrize(("args", "env"), [(["--prefetch-only", "--no-prefetch"], {}),
                                           (["--prefetch-only"], {"AGENTSTREAM_MEMORY_CONTEXT_K": "0"})])
def test_sinks_refuses_a_prefetch_only_run_with_nothing_to_prefetch(args: list[str], env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["sinks", *args], env=env)
    assert result.exit_code == 2 and "leaves nothing to run" in result.output
