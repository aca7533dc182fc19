"""The demo's tools part (issue 15): one task per default plan, run by the demo's worker with its MCP
servers, and each task's tool calls as the ToolCall events on agent.toolcalls tell them."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from schemas import Codec
from streams.client import ResultWatcher, make_task, read_topic, submit_tasks
from streams.settings import Settings
from streams.topics import TOOLCALLS

__all__ = ["run_tools_demo"]

_SAMPLE = ('"""A sample module for the tools demo."""\n\nimport os\n\n\n'
           'def size(path):\n    return os.path.getsize(path)\n')


def _tasks(run_id: str) -> list[dict[str, Any]]:
    return [
        make_task("Summarise the Python modules of the workspace", plan="simple", task_id=f"tools-{run_id}-simple"),
        make_task("Research what the project already knows about retries and its L3 tables", plan="research",
                  task_id=f"tools-{run_id}-research"),
        make_task("Review the sample module and write a report\n"
                  '@tool execute:filesystem__write_file {"path": "reports/review.md", "content": "reviewed"}',
                  plan="complex", task_id=f"tools-{run_id}-complex"),
    ]


async def _run(settings: Settings, codec: Codec, tasks: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    async with ResultWatcher(settings, codec) as watcher:
        ids = await submit_tasks(settings, codec, tasks)
        return await watcher.wait(ids, timeout_s)


async def _calls(settings: Settings, codec: Codec, ids: set[str]) -> list[dict[str, Any]]:
    return [r.record async for r in read_topic(settings, codec, settings.topic(TOOLCALLS), from_beginning=True,
                                                idle_timeout_s=1.0) if r.record and r.record["task_id"] in ids]


def run_tools_demo(settings: Settings, codec: Codec, run_id: str, timeout_s: float = 120.0) -> str | None:
    """Run and print the three plans' tasks; the reason it failed, or None."""
    click.echo("\n== tools over MCP (docs/tools.md): one task per plan")
    settings.tools_workspace_dir.mkdir(parents=True, exist_ok=True)
    (settings.tools_workspace_dir / "sample.py").write_text(_SAMPLE)
    tasks = _tasks(run_id)
    results = asyncio.run(_run(settings, codec, tasks, timeout_s))
    calls = asyncio.run(_calls(settings, codec, {t["task_id"] for t in tasks}))
    for task in tasks:
        result = results.get(task["task_id"])
        status = result["status"] if result else "NO RESULT"
        click.echo(f"  plan {task['plan']:<8} {task['task_id']}: {status}")
        for c in sorted((c for c in calls if c["task_id"] == task["task_id"]), key=lambda c: c["started_at"]):
            click.echo(f"    step {c['step']:>2} {c['server']}.{c['tool']}({c['arguments'][:60]}) -> {c['status']}, "
                       f"{c['result_bytes']} bytes, {c['latency_ms']:.1f} ms{' (reused)' if c['reused'] else ''}")
    missing = [t["plan"] for t in tasks if results.get(t["task_id"], {}).get("status") != "ok"]
    if missing:
        return f"plans without an ok result: {missing}"
    if not calls:
        return "no ToolCall events"
    return None
