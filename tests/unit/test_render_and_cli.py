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


@pytest.mark.parametrize("command", ["up", "down", "status", "worker", "submit", "tail", "demo", "bench", "settings"])
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
