"""MCP server `knowledge`: search the memory tiers' record (L3 full-text over past task results, this
deployment's scope) and the module documentation (L3 module docs, then the project's own module docstrings).

The offline stand-in for web research: a research server configured by URL with a higher priority is
chosen instead by plans that ask for the `research` capability (agents/data/mcp.yaml).
"""

from __future__ import annotations

import ast
import json
from functools import cache
from pathlib import Path

import psycopg
from mcp.server.fastmcp import FastMCP

from sinks.pg import connect
from streams.settings import Settings
from streams.tools.servers import serve

__all__ = ["build", "main", "module_docstrings"]

_PACKAGES = ("agents", "sinks", "schemas", "streams")


@cache
def module_docstrings() -> tuple[tuple[str, str], ...]:
    """(module, docstring) of every module of the project's packages."""
    root = Path(__file__).resolve().parents[3]
    found: list[tuple[str, str]] = []
    for package in _PACKAGES:
        for file in sorted((root / package).rglob("*.py")):
            try:
                doc = ast.get_docstring(ast.parse(file.read_text(encoding="utf-8")))
            except (SyntaxError, OSError, UnicodeDecodeError):
                continue
            if doc:
                found.append((".".join(file.relative_to(root).with_suffix("").parts), doc))
    return tuple(found)


def _words(query: str) -> list[str]:
    return [w for w in (w.strip(".,:;!?()\"'").lower() for w in query.split()) if len(w) > 2]


def build(dsn: str, scope: str) -> FastMCP:
    server = FastMCP("knowledge", log_level="WARNING")

    @server.tool()
    def search_memory(query: str, k: int = 5) -> str:
        """Past task results (L3) that match the query's words, best first (JSON [{task_id, output}])."""
        try:
            with connect(dsn) as conn:
                rows = conn.execute(
                    "SELECT task_id, left(output, 400) FROM memory_tasks WHERE scope = %s AND "
                    "to_tsvector('english', output) @@ plainto_tsquery('english', %s) "
                    "ORDER BY ts_rank(to_tsvector('english', output), plainto_tsquery('english', %s)) DESC, task_id "
                    "LIMIT %s", (scope, query, query, max(1, min(k, 50)))).fetchall()
        except psycopg.errors.UndefinedTable:
            rows = []  # no memory sink has run here yet
        return json.dumps([{"task_id": t, "output": o} for t, o in rows])

    @server.tool()
    def search_docs(query: str, k: int = 5) -> str:
        """Module documentation matching the query's words, most matches first (JSON [{module, text}])."""
        words = _words(query)
        scored = []
        for module, doc in module_docstrings():
            text = f"{module} {doc}".lower()
            score = sum(text.count(w) for w in words)
            if score:
                scored.append((-score, module, doc))
        return json.dumps([{"module": m, "text": d[:600]} for _, m, d in sorted(scored)[:max(1, min(k, 20))]])

    return server


def main() -> None:
    settings = Settings()
    serve(build(settings.postgres_dsn, settings.topic_prefix))


if __name__ == "__main__":
    main()
