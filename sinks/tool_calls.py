"""The tool-call ledger in PostgreSQL: one row per tool call, keyed by its call id (task id, step, index).

A task delivered again after a crash makes the same calls with the same ids: the ledger gives back the
recorded result instead of calling the tool again (a write is not done twice). A replay reads it too.
The same migrations make the read-only role the `database` tool server queries as.
"""

from __future__ import annotations

from agents.tools.calls import Recorded
from sinks.migrations import Migration
from sinks.pg import PgConnection

__all__ = ["MIGRATIONS", "READONLY_ROLE", "ToolCallLedger"]

READONLY_ROLE = "agentstream_tools_readonly"

MIGRATIONS = [
    Migration("tool_calls", 1, """
CREATE TABLE tool_calls (
    call_id     text        PRIMARY KEY,
    task_id     text        NOT NULL,
    server      text        NOT NULL,
    tool        text        NOT NULL,
    args_digest text        NOT NULL,
    status      text        NOT NULL,
    result      text        NOT NULL,
    latency_ms  double precision NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tool_calls_task ON tool_calls (task_id);
"""),
    Migration("tool_calls", 2, f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READONLY_ROLE}') THEN
        CREATE ROLE {READONLY_ROLE} NOLOGIN;
    END IF;
END $$;
GRANT pg_read_all_data TO {READONLY_ROLE};
GRANT {READONLY_ROLE} TO CURRENT_USER;
"""),
]


class ToolCallLedger:
    """Recorded tool calls by call id (blocking: call it from a thread)."""

    def __init__(self, dsn: str) -> None:
        self._pg = PgConnection(dsn, "tool_calls", MIGRATIONS)

    def get(self, call_id: str) -> Recorded | None:
        with self._pg.use() as conn:
            row = conn.execute("SELECT call_id, server, tool, args_digest, status, result, latency_ms "
                               "FROM tool_calls WHERE call_id = %s", (call_id,)).fetchone()
        return None if row is None else Recorded(*row)

    def put(self, call: Recorded, task_id: str) -> None:
        """Record a call once: a second write for the same id keeps the first."""
        with self._pg.use() as conn:
            conn.execute("INSERT INTO tool_calls (call_id, task_id, server, tool, args_digest, status, result, "
                         "latency_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (call_id) DO NOTHING",
                         (call.call_id, task_id, call.server, call.tool, call.args_digest, call.status, call.result,
                          call.latency_ms))

    def for_task(self, task_id: str) -> list[Recorded]:
        with self._pg.use() as conn:
            rows = conn.execute("SELECT call_id, server, tool, args_digest, status, result, latency_ms "
                                "FROM tool_calls WHERE task_id = %s ORDER BY call_id", (task_id,)).fetchall()
        return [Recorded(*r) for r in rows]

    def migrate(self) -> ToolCallLedger:
        with self._pg.use():
            return self

    def close(self) -> None:
        self._pg.close()
