"""Tools over MCP (issue 15) without the stack: the config file, the pool against real MCP server processes
(the project's filesystem and code servers, and an outside one), the simulator's tool calls, the executor's
ledger rule, and plans run in process."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from agents.factory import RunnerConfig, build_runner
from agents.models import ConfigError
from agents.simulator import install_simulator
from agents.tools import ToolKit
from agents.tools.calls import Recorded, ToolExecutor
from agents.tools.config import ServerSpec, ToolConfig, load_tools
from agents.tools.pool import ServerStartError, ToolPool

TEST_SERVER = str(Path(__file__).resolve().parents[1] / "data" / "mcp_test_server.py")
EXTERNAL = ServerSpec("external", ("{python}", TEST_SERVER), capabilities=frozenset({"research"}), timeout_s=10)


def _env(workspace: Path) -> dict[str, str]:
    return {**os.environ, "AGENTSTREAM_TOOLS_WORKSPACE": str(workspace)}


def _config(*names: str, extra: tuple[ServerSpec, ...] = ()) -> ToolConfig:
    default = load_tools()
    return ToolConfig(tuple(s for s in default.servers if s.name in names) + extra, default.plans)


# -- the config file ----------------------------------------------------------------------------------------


def test_the_packaged_config_has_the_four_servers_and_the_three_plans() -> None:
    config = load_tools()
    assert [s.name for s in config.servers] == ["filesystem", "database", "code_intelligence", "knowledge"]
    assert {n: p.kind for n, p in config.plans.items()} == {"simple": "sequence", "research": "parallel",
                                                             "complex": "dag"}
    assert (config.plans["simple"].timeout_s, config.plans["research"].timeout_s) == (30.0, 60.0)
    complex_ = config.plans["complex"]
    assert [[s.name for s in wave] for wave in complex_.ordered()] == [["analyze"], ["plan"], ["execute"]]
    assert config.plans["research"].aggregator == "research"
    memory = config.plans["research"].steps[0]
    assert config.servers_for(memory) == ["knowledge"]  # the best server for `research` when none outranks it
    web = ServerSpec("web", url="http://127.0.0.1:1/mcp", capabilities=frozenset({"research"}), priority=50)
    assert ToolConfig((*config.servers, web), config.plans).servers_for(memory) == ["web"]


@pytest.mark.parametrize(("text", "field"), [
    ("servers: [{name: a, command: [x], url: 'http://h/mcp'}]", "command"),
    ("servers: [{name: a}]", "command"),
    ("servers: [{name: a, url: 'ftp://h'}]", "url"),
    ("servers: [{name: a, command: [x]}]\nplans: {p: {kind: sequence, steps: [{name: s, servers: [b]}]}}",
     "servers"),
    ("plans: {p: {kind: dag, steps: [{name: a, depends_on: [b]}, {name: b, depends_on: [a]}]}}", "depends_on"),
    ("plans: {p: {kind: sequence, steps: [{name: a, depends_on: [a]}]}}", "depends_on"),
    ("plans: {p: {kind: parallel, steps: [{name: a}]}}", "aggregator"),
    ("plans: {p: {kind: star, steps: [{name: a}]}}", "kind"),
    ("plans: {p: {kind: sequence, steps: [{name: a, capability: dancing}]}}", "capability"),
])
def test_a_bad_config_fails_at_load_naming_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "mcp.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_tools(path)
    assert err.value.field == field and str(path) in str(err.value)


# -- the pool against real servers ---------------------------------------------------------------------------


async def test_the_filesystem_server_works_inside_the_workspace_and_refuses_every_path_outside(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (tmp_path / "secret.txt").write_text("outside")
    workspace.mkdir()
    (workspace / "escape").symlink_to(tmp_path / "secret.txt")
    async with ToolPool(_config("filesystem"), _env(workspace)) as pool:
        wrote = await pool.call("filesystem", "write_file", {"path": "notes/a.txt", "content": "hello"})
        assert wrote.ok and (workspace / "notes" / "a.txt").read_text() == "hello"
        assert (await pool.call("filesystem", "read_file", {"path": "notes/a.txt"})).text == "hello"
        for path in ("../secret.txt", str(tmp_path / "secret.txt"), "escape", "notes/../../secret.txt"):
            refused = await pool.call("filesystem", "read_file", {"path": path})
            assert refused.status == "error" and "outside the workspace" in refused.text, path
        refused = await pool.call("filesystem", "write_file", {"path": "../x.txt", "content": "no"})
        assert refused.status == "error" and not (tmp_path / "x.txt").exists()


async def test_code_intelligence_gives_symbols_imports_complexity_and_findings(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("import os\nimport sys\n\ndef f(x=[]):\n    try:\n        return sys.argv\n"
                                   "    except:\n        pass\n\nclass C:\n    def g(self):\n"
                                   "        return 1 if self else 2\n")
    async with ToolPool(_config("code_intelligence"), _env(tmp_path)) as pool:
        found = json.loads((await pool.call("code_intelligence", "analyze", {"path": "m.py"})).text)
    assert [s["name"] for s in found["symbols"]] == ["f", "C", "C.g"]
    assert found["imports"] == ["os", "sys"] and found["complexity"] == {"f": 2, "g": 2}
    assert [(f["line"], f["code"]) for f in found["findings"]] == [(1, "unused-import"), (4, "mutable-default"),
                                                                   (7, "bare-except")]


async def test_a_hung_call_times_out_as_a_tool_error_and_the_server_is_restarted(tmp_path: Path) -> None:
    async with ToolPool(_config(extra=(EXTERNAL,)), _env(tmp_path)) as pool:
        hung = await pool.call("external", "sleep", {"seconds": 30}, timeout_s=0.5)
        assert hung.status == "timeout" and "timed out after 0.5 s" in hung.text
        answered = await pool.call("external", "echo", {"text": "after"})
        assert answered.ok and answered.text == "after"
        assert pool.starts("external") == 2  # the hung server was replaced


async def test_a_crashed_server_is_restarted_and_the_call_made_on_the_new_one(tmp_path: Path) -> None:
    async with ToolPool(_config(extra=(EXTERNAL,)), _env(tmp_path)) as pool:
        first = int((await pool.call("external", "pid", {})).text)
        server = psutil.Process(first)
        server.kill()
        server.wait(5)
        again = await pool.call("external", "pid", {})
        assert again.ok and again.restarted and int(again.text) != first
        assert pool.starts("external") == 2


async def test_a_server_that_cannot_start_is_an_error_naming_it_and_its_command(tmp_path: Path) -> None:
    missing = ServerSpec("ghost", ("/nonexistent/mcp-server", "--flag"))
    with pytest.raises(ServerStartError, match=r"'ghost'.*/nonexistent/mcp-server --flag"):
        await ToolPool(_config(extra=(missing,)), _env(tmp_path)).start()
    dies = ServerSpec("dies", ("{python}", "-c", "raise SystemExit(3)"))
    with pytest.raises(ServerStartError, match=rf"'dies'.*{sys.executable} -c raise SystemExit\(3\)"):
        await ToolPool(_config(extra=(dies,)), _env(tmp_path), start_timeout_s=10).start()


# -- the simulator, the executor, plans ----------------------------------------------------------------------


class MemoryLedger:
    def __init__(self) -> None:
        self.rows: dict[str, Recorded] = {}

    async def get(self, call_id: str) -> Recorded | None:
        return self.rows.get(call_id)

    async def put(self, call: Recorded, task_id: str) -> None:
        self.rows.setdefault(call.call_id, call)


async def test_a_call_recorded_in_the_ledger_is_not_made_again_and_recorded_mode_calls_nothing(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []

    async def emit(event: dict[str, Any]) -> None:
        events.append(event)

    ledger = MemoryLedger()
    task = {"task_id": "t-led", "tenant": "acme"}
    args = json.dumps({"path": "log.txt", "content": "line\n"})
    async with ToolPool(_config("filesystem"), _env(tmp_path)) as pool:
        live = ToolExecutor(pool, ledger, emit)
        for _ in range(2):  # the same call id twice: a task delivered again
            assert (await live.execute(task, 1, 0, "filesystem__append_file", args, None)).ok
        replay = ToolExecutor(pool, ledger, emit, mode="recorded")
        again = await replay.execute(task, 1, 0, "filesystem__append_file", args, None)
        unknown = await replay.execute(task, 2, 0, "filesystem__append_file", args, None)
    assert (tmp_path / "log.txt").read_text() == "line\n"  # appended once
    assert (live.called, live.reused, replay.called, replay.reused) == (1, 1, 0, 1)
    assert again.ok and unknown.status == "unrecorded" and "--live-tools" in unknown.text
    assert [(e["call_id"], e["reused"], e["status"]) for e in events] == [
        ("acme/t-led:1:0", False, "ok"), ("acme/t-led:1:0", True, "ok"), ("acme/t-led:1:0", True, "ok"),
        ("acme/t-led:2:0", False, "unrecorded")]
    assert events[0]["result_digest"] == events[1]["result_digest"] and events[0]["tenant"] == "acme"


async def test_tool_arguments_are_redacted_on_the_event(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []

    async def emit(event: dict[str, Any]) -> None:
        events.append(event)

    key = "sk-" + "proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
    async with ToolPool(_config("filesystem"), _env(tmp_path)) as pool:
        await ToolExecutor(pool, None, emit).execute({"task_id": "t"}, 1, 0, "filesystem__write_file",
                                                     json.dumps({"path": "k.txt", "content": key}), None)
    assert key not in events[0]["arguments"] and "REDACTED" in events[0]["arguments"]


async def test_plans_run_in_process_with_the_simulator_calling_tools(tmp_path: Path) -> None:
    """Each default plan, its steps' tool calls made through the pool; a directive is followed only in its
    step; the aggregator cites every branch's result; a repeated run makes the same calls (same ids)."""
    install_simulator()
    (tmp_path / "mod.py").write_text("def f():\n    return 1\n")
    events: list[dict[str, Any]] = []

    async def emit(event: dict[str, Any]) -> None:
        events.append(event)

    config = _config("filesystem", "code_intelligence", extra=(EXTERNAL,))
    plans = {n: p for n, p in config.plans.items() if n in ("simple", "complex")}
    config = ToolConfig(config.servers, plans)
    async with ToolPool(config, _env(tmp_path)) as pool:
        runner = build_runner(RunnerConfig(), tools=ToolKit(config, ToolExecutor(pool, MemoryLedger(), emit)))
        description = 'tidy up\n@tool gather:filesystem__write_file {"path": "out.txt", "content": "x"}'
        run = await runner.run({"task_id": "t-simple", "description": description, "plan": "simple",
                                "created_at": 1})
        assert run.result["status"] == "ok" and run.result["metadata"]["plan"] == "simple"
        assert [(e["step"], e["server"], e["tool"]) for e in events] == [(1, "filesystem", "write_file"),
                                                                         (5, "code_intelligence", "python_files")]
        assert (tmp_path / "out.txt").read_text() == "x"
        steps = [o["step"] for o in run.outputs]
        assert steps == [1, 2, 5, 6] and all(o["metadata"]["plan"] == "simple" for o in run.outputs)
        first_ids = [e["call_id"] for e in events]
        events.clear()
        again = await runner.run({"task_id": "t-simple", "description": description, "plan": "simple",
                                  "created_at": 1})
        assert [e["call_id"] for e in events] == first_ids and all(e["reused"] for e in events)
        assert again.result["output"] == run.result["output"]
        rejected = await runner.run({"task_id": "t-x", "description": "d", "plan": "nope", "created_at": 1})
        assert rejected.result["status"] == "rejected" and "plan" in rejected.result["error"]


def test_the_tools_commands_list_the_servers_and_call_a_tool(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from streams.cli.main import cli

    env = {"AGENTSTREAM_TOOLS_WORKSPACE": str(tmp_path), "AGENTSTREAM_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    listed = runner.invoke(cli, ["tools", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = {r["server"]: r for r in json.loads(listed.output)}
    assert list(rows) == ["filesystem", "database", "code_intelligence", "knowledge"]
    assert all(r["health"] == "ok" and r["transport"] == "stdio" for r in rows.values())
    assert "write_file" in rows["filesystem"]["tools"] and "query" in rows["database"]["tools"]
    wrote = runner.invoke(cli, ["tools", "call", "filesystem", "write_file", "--args",
                                '{"path": "a.txt", "content": "hi"}'], env=env)
    assert wrote.exit_code == 0 and (tmp_path / "a.txt").read_text() == "hi"
    refused = runner.invoke(cli, ["tools", "call", "filesystem", "read_file", "--args", '{"path": "/etc/passwd"}'],
                            env=env)
    assert refused.exit_code == 1 and "outside the workspace" in refused.output
    unknown = runner.invoke(cli, ["tools", "call", "nope", "x"], env=env)
    assert unknown.exit_code == 1 and "no MCP server 'nope'" in unknown.output


async def test_a_live_run_that_does_not_record_calls_every_tool_again(tmp_path: Path) -> None:
    """A replay with --live-tools: the ledger holds the call, but the tool is called again (on its copy)."""
    ledger = MemoryLedger()
    args = json.dumps({"path": "log.txt", "content": "line\n"})
    async with ToolPool(_config("filesystem"), _env(tmp_path)) as pool:
        await ToolExecutor(pool, ledger).execute({"task_id": "t"}, 1, 0, "filesystem__append_file", args, None)
        what_if = ToolExecutor(pool, ledger, record=False)
        await what_if.execute({"task_id": "t"}, 1, 0, "filesystem__append_file", args, None)
    assert (what_if.called, what_if.reused) == (1, 0)
    assert (tmp_path / "log.txt").read_text() == "line\nline\n"
