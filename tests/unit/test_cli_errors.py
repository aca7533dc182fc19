"""Issue 19: every command tells the truth. The CLI's one error path, argument spellings and tables,
without a stack: what a user sees (stdout and stderr of a real `agentstream` process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from streams.cli.errors import explain, message_for
from streams.cli.main import cli
from streams.cli.prompts import _columns
from streams.devstack import free_port
from streams.replay.store import Run, TaskRow, save_run
from streams.settings import Settings


def _agentstream(*args: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "streams", *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120, check=False, cwd=cwd)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def test_expected_failures_are_explained_and_a_bug_says_how_to_see_more() -> None:
    import psycopg

    from agents.models import ConfigError
    from streams.devstack import StackError
    from streams.kafka import KafkaUnavailable

    assert "agentstream up" in explain(KafkaUnavailable("127.0.0.1:1"))
    assert explain(StackError("port 1 on 127.0.0.1 is already in use")) == "port 1 on 127.0.0.1 is already in use"
    assert "DATABASE_URL" in explain(psycopg.OperationalError("connection refused\nmore"))
    missing = explain(FileNotFoundError(2, "No such file or directory", "/nowhere/report.html"))
    assert missing.startswith("/nowhere/report.html: No such file or directory") and "folder" in missing
    assert "unknown field" in explain(ConfigError(Path("a.toml"), "agent 'x'", "colour", "unknown field"))
    assert explain(ExceptionGroup("many", [RuntimeError("?"), KafkaUnavailable("h:1")])).startswith("Kafka is not")
    bug = message_for(RuntimeError("boom"))
    assert bug.splitlines()[0] == "unexpected RuntimeError: boom" and "--debug" in bug and len(bug.splitlines()) == 2


def _runs(data_dir: Path) -> Settings:
    settings = Settings(AGENTSTREAM_DATA_DIR=data_dir)
    rows = [TaskRow(f"t{i}", "d", "ok", f"out {i}", "m", 0.1 * i, 0.0001, 10.0) for i in range(4)]
    save_run(settings, Run("a", {"kind": "replay"}, rows))
    save_run(settings, Run("b", {"kind": "replay"}, rows[::-1]))
    return settings


def test_a_report_into_a_missing_folder_is_one_line_and_the_traceback_only_with_debug(tmp_path) -> None:
    _runs(tmp_path)
    env = {"AGENTSTREAM_DATA_DIR": str(tmp_path)}
    target = tmp_path / "no" / "such" / "report.html"
    code, out = _agentstream("replay", "compare", "a", "b", "--html", str(target), env=env)
    assert code == 1 and "Traceback" not in out
    assert out.splitlines()[-1] == (f"Error: {target}: No such file or directory: create its folder first, "
                                    "or give another path")
    code, out = _agentstream("--debug", "replay", "compare", "a", "b", "--html", str(target), env=env)
    assert code == 1 and "Traceback (most recent call last)" in out and "FileNotFoundError" in out


def test_a_port_taken_during_the_demo_is_one_clear_line(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # PostgreSQL and Redis are "external" (their URLs set), so only Kafka would be started: its port is taken.
        env = {"AGENTSTREAM_DATA_DIR": str(tmp_path), "AGENTSTREAM_KAFKA_PORT": str(port),
               "AGENTSTREAM_KAFKA_CONTROLLER_PORT": str(free_port()),
               "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
               "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
        code, out = _agentstream("demo", "--tasks", "1", env=env)
    assert code == 1 and "Traceback" not in out
    assert f"Error: port {port} on 127.0.0.1 is already in use" in out and "AGENTSTREAM_KAFKA_PORT" in out


def test_submit_without_arguments_says_what_to_give() -> None:
    result = CliRunner().invoke(cli, ["submit"])
    assert result.exit_code == 2 and "give the task as TEXT, or --file FILE" in result.output
    assert "not both" not in result.output
    both = CliRunner().invoke(cli, ["submit", "x", "--file", __file__])
    assert both.exit_code == 2 and "either TEXT or --file, not both" in both.output


@pytest.mark.parametrize("args", [["prompt", "show", "review", "x2"], ["prompt", "diff", "review", "v1", "two"]])
def test_a_version_that_is_not_one_is_refused_before_any_connection(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "is not a prompt version (write 2 or v2)" in result.output


def test_version_spellings_2_and_v2_are_the_same() -> None:
    from streams.cli.prompts import VERSION

    assert {VERSION.convert(spelling, None, None) for spelling in ("2", "v2", "V2", " v2 ")} == {2}


def test_tables_are_as_wide_as_their_longest_cell() -> None:
    rows = [("name", "n", "decision"), ("a-very-long-experiment-name-that-breaks-fixed-columns", "1200", "-"),
            ("short", "3", "promote v2")]
    lines = _columns(rows, right=frozenset({1}))
    cells = ("decision", "-", "promote v2")
    assert all(line.endswith(cell) for line, cell in zip(lines, cells, strict=True))
    assert len({len(line) - len(cell) for line, cell in zip(lines, cells, strict=True)}) == 1  # one last column
    assert lines[1].index("1200") + 4 == lines[2].index(" 3 ") + 2  # numbers right-aligned
