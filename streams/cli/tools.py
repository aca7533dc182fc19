"""`agentstream tools`: the configured MCP servers, their tools and health; call one tool by hand."""

from __future__ import annotations

import asyncio
import json

import click

from streams.settings import Settings

__all__ = ["tools"]


@click.group()
def tools() -> None:
    """Tools over MCP: the servers of agents/data/mcp.yaml (or AGENTSTREAM_TOOLS_FILE)."""


@tools.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@click.pass_obj
def list_tools(settings: Settings, as_json: bool) -> None:
    """Start every server, print its transport, health and tools, then stop them."""
    from streams.tools.runtime import tool_pool

    async def run() -> list[dict]:
        async with tool_pool(settings) as pool:
            health = await pool.health()
            return [{"server": s.name, "transport": s.transport, "target": s.describe(), "priority": s.priority,
                     "capabilities": sorted(s.capabilities), "health": health[s.name],
                     "tools": [t.name for t in pool.tools(s.name)]} for s in pool.config.servers]

    rows = asyncio.run(run())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['server']:<18} {row['transport']:<5} {row['health']:<10} priority {row['priority']:<3} "
                   f"[{', '.join(row['capabilities'])}]  {row['target']}")
        click.echo(f"{'':<18} tools: {', '.join(row['tools'])}")


@tools.command("call")
@click.argument("server")
@click.argument("tool")
@click.option("--args", "args_json", default="{}", help="The tool's arguments as a JSON object.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Seconds (default: the server's own).")
@click.pass_obj
def call_tool(settings: Settings, server: str, tool: str, args_json: str, timeout_s: float | None) -> None:
    """Start SERVER alone, call TOOL with --args, print the result; exit 1 when the call failed."""
    from streams.tools.runtime import tool_pool

    try:
        args = json.loads(args_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--args") from exc
    if not isinstance(args, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--args")

    async def run() -> tuple[str, str]:
        pool = tool_pool(settings)
        if server not in pool.names:
            raise click.ClickException(f"no MCP server {server!r}; configured: {', '.join(pool.names)}")
        await pool.start([server])
        try:
            outcome = await pool.call(server, tool, args, timeout_s)
        finally:
            await pool.close()
        return outcome.status, outcome.text

    status, text = asyncio.run(run())
    click.echo(text)
    if status != "ok":
        raise click.ClickException(f"{server}.{tool}: {status}")
