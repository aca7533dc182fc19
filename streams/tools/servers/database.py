"""MCP server `database`: read-only SQL over the L3 database and its schema listing.

Every query is one statement (it is prepared, so `COMMIT; DELETE ...` is refused), run in a READ ONLY
transaction as the read-only role (sinks/tool_calls.py), with a statement
timeout (AGENTSTREAM_TOOLS_SQL_TIMEOUT_MS) and a row limit (AGENTSTREAM_TOOLS_SQL_MAX_ROWS): a write, a
slow query or a huge answer is refused or cut, never run against the data.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.fastmcp import FastMCP

from sinks.pg import PgConnection
from sinks.tool_calls import MIGRATIONS, READONLY_ROLE
from streams.settings import Settings
from streams.tools.servers import serve

__all__ = ["build", "main"]


def _value(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)


def build(dsn: str, max_rows: int, timeout_ms: int) -> FastMCP:
    server = FastMCP("database", log_level="WARNING")
    pg = PgConnection(dsn, "database-tool", MIGRATIONS)

    @server.tool()
    def query(sql: str, row_limit: int | None = None) -> str:
        """Run one read-only SQL statement; JSON {columns, rows, truncated}. Writes are refused."""
        limit = max(1, min(row_limit or max_rows, max_rows))
        with pg.use() as conn, conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(f"SET LOCAL ROLE {READONLY_ROLE}")
            conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
            # prepared: one statement only (a `COMMIT; ...` cannot leave the read-only transaction and role)
            cur = conn.execute(sql, prepare=True)
            columns = [d.name for d in cur.description or []]
            rows = cur.fetchmany(limit + 1) if cur.description else []
        return json.dumps({"columns": columns, "rows": [[_value(v) for v in r] for r in rows[:limit]],
                           "truncated": len(rows) > limit})

    @server.tool()
    def list_tables(schema: str = "public") -> str:
        """The schema's tables and views with their columns and types, as JSON {table: [[column, type]]}."""
        with pg.use() as conn:
            rows = conn.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = %s ORDER BY table_name, ordinal_position", (schema,)).fetchall()
        tables: dict[str, list[list[str]]] = {}
        for table, column, kind in rows:
            tables.setdefault(table, []).append([column, kind])
        return json.dumps(tables)

    return server


def main() -> None:
    settings = Settings()
    serve(build(settings.postgres_dsn, settings.tools_sql_max_rows, settings.tools_sql_timeout_ms))


if __name__ == "__main__":
    main()
