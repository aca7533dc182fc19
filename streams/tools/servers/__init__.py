"""The project's own MCP servers, each a small process run with `python -m streams.tools.servers.<name>`.

Each builds the Settings once (its entry point) and serves over stdio, or over streamable HTTP with
`--http PORT`; the worker's pool starts them (agents/data/mcp.yaml).
"""

from __future__ import annotations

import argparse

from mcp.server.fastmcp import FastMCP

__all__ = ["serve"]


def serve(server: FastMCP) -> None:
    """Run `server` over stdio, or streamable HTTP on 127.0.0.1 when `--http PORT` is given. Blocks."""
    parser = argparse.ArgumentParser(prog=server.name)
    parser.add_argument("--http", type=int, default=None, metavar="PORT")
    args = parser.parse_args()
    if args.http is None:
        server.run("stdio")
        return
    server.settings.host, server.settings.port = "127.0.0.1", args.http
    server.run("streamable-http")
