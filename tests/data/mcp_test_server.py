"""An MCP server that is not the project's: the tests start it over stdio or streamable HTTP (`--http PORT`).

search: a slow "web" search (its answer names the query); sleep: hangs for as long as asked; echo; pid.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from mcp.server.fastmcp import FastMCP

server = FastMCP("external", log_level="WARNING")


@server.tool()
async def search(query: str) -> str:
    """Search the web (a stand-in): takes 0.6 s, answers with the query."""
    await asyncio.sleep(0.6)
    return f"external result for: {query}"


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def echo(text: str) -> str:
    """The text back."""
    return text


@server.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None)
    args = parser.parse_args()
    if args.http is None:
        server.run("stdio")
    else:
        server.settings.host, server.settings.port = "127.0.0.1", args.http
        server.run("streamable-http")
