"""`agentstream bench`, tools part (issue 15): what a tool round trip through MCP over stdio costs per call.

The same tool (the filesystem server's read_file on a small file) is called N times through the pool, one
call at a time, and the same work is done N times in process; the difference per call is the MCP overhead
(JSON-RPC framing, the pipe, the server's dispatch and validation). Then N calls 16 at a time, the rate a
plan's parallel calls get from one server.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import click

from agents.tools.pool import ToolPool
from streams.settings import Settings
from streams.tools.runtime import server_env, tool_config

__all__ = ["tools_bench"]


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


async def _measure(settings: Settings, calls: int) -> None:
    config = tool_config(settings)
    only = type(config)(tuple(s for s in config.servers if s.name == "filesystem"), {})
    with tempfile.TemporaryDirectory(prefix="agentstream-bench-tools-") as folder:
        workspace = Path(folder)
        (workspace / "note.txt").write_text("x" * 200)
        env = {**server_env(settings), "AGENTSTREAM_TOOLS_WORKSPACE": str(workspace)}
        async with ToolPool(only, env) as pool:
            for _ in range(20):  # warm up both ends
                await pool.call("filesystem", "read_file", {"path": "note.txt"})
            latencies = []
            for _ in range(calls):
                started = time.perf_counter()
                outcome = await pool.call("filesystem", "read_file", {"path": "note.txt"})
                latencies.append((time.perf_counter() - started) * 1000.0)
                assert outcome.ok, outcome.text
            started = time.perf_counter()
            for _ in range(calls // 16):
                await asyncio.gather(*(pool.call("filesystem", "read_file", {"path": "note.txt"}) for _ in range(16)))
            parallel_rate = (calls // 16 * 16) / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(calls):
            (workspace / "note.txt").resolve().read_text(encoding="utf-8")
        direct_ms = (time.perf_counter() - started) * 1000.0 / calls
    mean = statistics.fmean(latencies)
    click.echo(f"MCP stdio round trip (filesystem.read_file, 200 B): mean {mean:.3f} ms, p50 {_pct(latencies, 50):.3f}"
               f" ms, p95 {_pct(latencies, 95):.3f} ms per call ({calls:,} calls, one at a time)")
    click.echo(f"the same read in process                         : {direct_ms:.4f} ms per call")
    click.echo(f"MCP overhead per call                            : {mean - direct_ms:.3f} ms")
    click.echo(f"16 calls at a time on one server                 : {parallel_rate:,.0f} calls/s")


def tools_bench(settings: Settings, calls: int = 1000) -> None:
    asyncio.run(_measure(settings, calls))
