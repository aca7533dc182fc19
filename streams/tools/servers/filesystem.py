"""MCP server `filesystem`: read, write, append, list and search files under the workspace folder
(AGENTSTREAM_TOOLS_WORKSPACE); a path outside it is refused (an error result, nothing touched)."""

from __future__ import annotations

import re

from mcp.server.fastmcp import FastMCP

from streams.settings import Settings
from streams.tools.servers import serve
from streams.tools.servers.workspace import Workspace, workspace_of

__all__ = ["build", "main"]

_MAX_READ = 256 * 1024


def build(workspace: Workspace) -> FastMCP:
    server = FastMCP("filesystem", log_level="WARNING")

    @server.tool()
    def read_file(path: str) -> str:
        """The text of a file in the workspace (at most 256 KiB)."""
        return workspace.path(path).read_text(encoding="utf-8", errors="replace")[:_MAX_READ]

    @server.tool()
    def write_file(path: str, content: str) -> str:
        """Write (replace) a text file in the workspace, creating its folders."""
        target = workspace.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        return f"wrote {len(content.encode())} bytes to {workspace.show(target)}"

    @server.tool()
    def append_file(path: str, content: str) -> str:
        """Append text to a file in the workspace (created if missing)."""
        target = workspace.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as out:
            out.write(content)
        return f"appended {len(content.encode())} bytes to {workspace.show(target)}"

    @server.tool()
    def list_directory(path: str = ".") -> list[str]:
        """The entries of a workspace folder ('/' after folders)."""
        folder = workspace.path(path)
        return sorted(f"{workspace.show(p)}{'/' if p.is_dir() else ''}" for p in folder.iterdir())

    @server.tool()
    def search(pattern: str, path: str = ".", max_hits: int = 50) -> list[str]:
        """Lines matching a regular expression in the workspace's text files, as `file:line: text`."""
        regex = re.compile(pattern)
        hits: list[str] = []
        for file in sorted(workspace.path(path).rglob("*")):
            if not file.is_file() or file.stat().st_size > _MAX_READ:
                continue
            for n, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if regex.search(line):
                    hits.append(f"{workspace.show(file)}:{n}: {line.strip()[:200]}")
                    if len(hits) >= max_hits:
                        return hits
        return hits

    return server


def main() -> None:
    serve(build(workspace_of(Settings())))


if __name__ == "__main__":
    main()
