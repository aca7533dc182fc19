"""Tools over MCP on the real stack (issue 15): the three default plans run by a real worker with the
project's servers and an outside server over streamable HTTP; a write survives a SIGKILL without being done
twice; a replay calls no tool unless told to; a server that cannot start stops the worker, naming it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.tools.config import default_tools_file
from schemas import default_codec
from streams.client import ResultWatcher, make_task, read_topic, submit_tasks
from streams.devstack import free_ports
from streams.lifecycle import CRASH_EXIT_CODE
from streams.replay.range import Bound
from streams.replay.run import ReplaySpec, run_replay
from streams.settings import Settings
from streams.topics import RESULTS, TOOLCALLS

pytestmark = pytest.mark.integration

codec = default_codec()
TEST_SERVER = Path(__file__).resolve().parents[1] / "data" / "mcp_test_server.py"


@pytest.fixture
def web_server() -> Iterator[str]:
    """An outside MCP server over streamable HTTP, its own process; its URL."""
    (port,) = free_ports(1)
    proc = subprocess.Popen([sys.executable, str(TEST_SERVER), "--http", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def _tools_file(tmp_path: Path, *extra: dict[str, Any]) -> Path:
    config = yaml.safe_load(default_tools_file().read_text())
    config["servers"] += list(extra)
    path = tmp_path / "mcp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _with_tools(settings: Settings, tmp_path: Path, tools_file: Path | None = None) -> Settings:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    return settings.model_copy(update={"tools_enabled": True, "tools_workspace": workspace,
                                       "tools_file": tools_file or default_tools_file()})


async def _run(settings: Settings, tasks: list[dict[str, Any]], timeout_s: float = 90) -> dict[str, dict[str, Any]]:
    watcher = ResultWatcher(settings, codec)
    await watcher.start()
    try:
        await submit_tasks(settings, codec, tasks)
        return await watcher.wait([t["task_id"] for t in tasks], timeout_s)
    finally:
        await watcher.stop()


async def _calls(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """ToolCall events per task id, in topic order."""
    calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
    async for r in read_topic(settings, codec, settings.topic(TOOLCALLS), from_beginning=True, idle_timeout_s=1.5):
        if r.record is not None:
            calls[r.record["task_id"]].append(r.record)
    return calls


def _step_name(call: dict[str, Any], plan: list[str], max_rounds: int = 4) -> str:
    return plan[(call["step"] - 1) // max_rounds]


async def test_the_three_default_plans_on_a_worker_with_the_own_servers_and_an_outside_http_one(
        isolated: Settings, worker_factory, tmp_path: Path, web_server: str) -> None:
    """simple: its two steps' calls in order; research: the branches' calls overlap in time (the outside
    server's search and a database sleep each take 0.6 s) and the aggregator cites every result; complex: each
    DAG step's calls start after the calls of the step it depends on have finished, and its write happened.
    The outside server, configured by URL with a higher priority for `research`, serves the research branch."""
    web = {"name": "web", "url": web_server, "capabilities": ["research"], "priority": 50, "timeout_s": 10}
    settings = _with_tools(isolated, tmp_path, _tools_file(tmp_path, web))
    (settings.tools_workspace_dir / "mod.py").write_text("import os\n\ndef f(x):\n    return x if x else 0\n")
    worker_factory(**{k: getattr(settings, k) for k in ("tools_enabled", "tools_workspace", "tools_file")})
    simple = make_task("Summarise the module", plan="simple")
    research = make_task("Research the module's history\n"
                         '@tool data:database__query {"sql": "SELECT pg_sleep(0.6)"}', plan="research")
    complex_ = make_task("Refactor the module\n"
                         '@tool execute:filesystem__write_file {"path": "report.md", "content": "refactored"}',
                         plan="complex")
    results = await _run(settings, [simple, research, complex_])
    assert {r["status"] for r in results.values()} == {"ok"}
    calls = await _calls(settings)

    seq = calls[simple["task_id"]]
    assert [(_step_name(c, ["gather", "answer"]), c["server"]) for c in seq] == [
        ("gather", "filesystem"), ("answer", "code_intelligence")]
    assert seq[0]["created_at"] <= seq[1]["started_at"]

    branches = {_step_name(c, ["memory", "data", "code"]): c for c in calls[research["task_id"]]}
    assert {n: (c["server"], c["tool"], c["status"]) for n, c in branches.items()} == {
        "memory": ("web", "search", "ok"), "data": ("database", "query", "ok"),
        "code": ("code_intelligence", "python_files", "ok")}
    slow = [branches["memory"], branches["data"]]
    assert max(c["started_at"] for c in slow) < min(c["created_at"] for c in slow)  # they ran at the same time
    assert branches["code"]["started_at"] < min(c["created_at"] for c in slow)
    answer = results[research["task_id"]]["output"]
    for c in branches.values():  # the aggregator's answer uses every branch's result
        assert f"- used {c['server']}__{c['tool']}: {c['result_digest'][:12]}" in answer

    dag = calls[complex_["task_id"]]
    by_step: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in dag:
        by_step[_step_name(c, ["analyze", "plan", "execute"])].append(c)
    assert sorted(by_step) == ["analyze", "execute", "plan"]
    assert {c["server"] for c in by_step["analyze"]} == {"code_intelligence", "filesystem"}
    assert max(c["created_at"] for c in by_step["analyze"]) <= min(c["started_at"] for c in by_step["plan"])
    assert max(c["created_at"] for c in by_step["plan"]) <= min(c["started_at"] for c in by_step["execute"])
    assert (settings.tools_workspace_dir / "report.md").read_text() == "refactored"
    assert all(not c["reused"] for c in [*seq, *dag, *branches.values()])


async def test_a_write_before_a_sigkill_is_done_once_and_the_answer_is_the_same(
        isolated: Settings, worker_factory, tmp_path: Path) -> None:
    """The worker dies right after the task's result is on the broker, before its done mark: the task runs
    again after the restart, makes the same call (same id), and gets the ledger's result: the file has one line."""
    settings = _with_tools(isolated, tmp_path)
    tools = {k: getattr(settings, k) for k in ("tools_enabled", "tools_workspace", "tools_file")}
    doomed = worker_factory(fault_point="task-after-results", **tools)
    task = make_task('Keep a log\n@tool gather:filesystem__append_file {"path": "log.txt", "content": "one line\\n"}',
                     plan="simple")
    await submit_tasks(settings, codec, [task])
    assert await asyncio.to_thread(doomed.wait, 120) == CRASH_EXIT_CODE
    worker_factory(**tools)
    answers: list[dict[str, Any]] = []
    for _ in range(60):
        answers = [r.record async for r in read_topic(settings, codec, settings.topic(RESULTS), from_beginning=True,
                                                      idle_timeout_s=1.0) if r.record["task_id"] == task["task_id"]]
        if len(answers) >= 2:
            break
        await asyncio.sleep(1.0)
    assert len(answers) == 2 and answers[1]["metadata"]["attempt"] == "2"
    assert answers[0]["output"] == answers[1]["output"] and answers[1]["status"] == "ok"
    assert (settings.tools_workspace_dir / "log.txt").read_text() == "one line\n"
    write = [c for c in (await _calls(settings))[task["task_id"]] if c["tool"] == "append_file"]
    assert [(c["call_id"], c["reused"]) for c in write] == [(f"{task['task_id']}:1:0", False),
                                                            (f"{task['task_id']}:1:0", True)]


@pytest.mark.slow
async def test_a_replay_uses_the_recorded_results_unless_live_tools_and_then_works_on_a_copy(
        isolated: Settings, worker_factory, tmp_path: Path) -> None:
    settings = _with_tools(isolated, tmp_path)
    worker_factory(**{k: getattr(settings, k) for k in ("tools_enabled", "tools_workspace", "tools_file")})
    task = make_task('Keep a log\n@tool gather:filesystem__append_file {"path": "log.txt", "content": "one line\\n"}',
                     plan="simple")
    produced = await _run(settings, [task])
    name = settings.app_id.rsplit("-", 1)[-1]
    recorded = await run_replay(settings, codec, ReplaySpec(name=f"{name}-rec", start=Bound("earliest"),
                                                            end=Bound("now")))
    live = await run_replay(settings, codec, ReplaySpec(name=f"{name}-live", start=Bound("earliest"),
                                                        end=Bound("now"), live_tools=True))
    assert recorded.rows[0].output == produced[task["task_id"]]["output"] == live.rows[0].output
    for run, reused in ((recorded, True), (live, False)):
        calls = (await _calls(settings.isolated(f"eval-{run.name}")))[task["task_id"]]
        assert calls and all(c["reused"] is reused for c in calls), run.name
    assert (settings.tools_workspace_dir / "log.txt").read_text() == "one line\n"  # production's, untouched
    copy = Path(live.meta["folder"]) / "workspace" / "log.txt"
    assert copy.read_text() == "one line\none line\n"  # the live replay wrote to its copy


@pytest.mark.slow  # the pool's own start failure is in make test (tests/unit/test_tools_units.py)
async def test_a_worker_whose_tool_server_cannot_start_stops_naming_the_server_and_command(
        isolated: Settings, worker_factory, tmp_path: Path) -> None:
    broken = {"name": "broken", "command": ["/nonexistent/mcp-server"], "capabilities": ["files"]}
    settings = _with_tools(isolated, tmp_path, _tools_file(tmp_path, broken))
    worker = worker_factory(**{k: getattr(settings, k) for k in ("tools_enabled", "tools_workspace", "tools_file")})
    assert await asyncio.to_thread(worker.wait, 90) != 0
    log = (settings.data_dir / f"worker-{settings.app_id}.log").read_text()
    assert "MCP server 'broken' did not start (stdio: /nonexistent/mcp-server)" in log


async def test_the_database_server_reads_as_the_read_only_role_and_refuses_writes(
        isolated: Settings, tmp_path: Path) -> None:
    """Reads and the schema listing work; a write, a role change followed by a write, several statements
    and a query past the time limit are refused, and the row limit cuts a long answer."""
    import json

    from agents.tools.config import ToolConfig, load_tools
    from agents.tools.pool import ToolPool
    from streams.tools.runtime import server_env

    settings = _with_tools(isolated, tmp_path).model_copy(update={"tools_sql_max_rows": 5,
                                                                  "tools_sql_timeout_ms": 500})
    config = load_tools()
    only = ToolConfig(tuple(s for s in config.servers if s.name == "database"), {})
    async with ToolPool(only, server_env(settings)) as pool:
        async def query(sql: str) -> Any:
            return await pool.call("database", "query", {"sql": sql})

        read = await query("SELECT current_user, g FROM generate_series(1, 20) g")
        assert read.ok, read.text
        body = json.loads(read.text)
        assert body["columns"] == ["current_user", "g"] and len(body["rows"]) == 5 and body["truncated"]
        assert body["rows"][0][0] == "agentstream_tools_readonly"
        tables = json.loads((await pool.call("database", "list_tables", {})).text)
        assert "tool_calls" in tables and ["call_id", "text"] in tables["tool_calls"]
        for sql in ("DELETE FROM tool_calls", "CREATE TABLE x (a int)", "SELECT 1; DELETE FROM tool_calls",
                    "COMMIT; DELETE FROM tool_calls", "SELECT pg_sleep(5)"):
            refused = await query(sql)
            assert refused.status == "error", sql
        assert (await query("SELECT count(*) FROM tool_calls")).ok
