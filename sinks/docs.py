"""Module documentation in PostgreSQL: one document per (module, commit), written idempotently by task_id.

`scope` is the topic prefix of the writer, so evaluation runs and tests never mix their documents with
production's. Searchable vectors (L2) come with the memory tiers; this table is the L3 record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from sinks.migrations import Migration, apply_migrations

__all__ = ["MIGRATIONS", "ModuleDoc", "documented_shas", "latest_doc", "setup_docs", "write_docs"]

MIGRATIONS = [
    Migration("docs", 1, """
CREATE TABLE module_docs (
    task_id      text        PRIMARY KEY,
    scope        text        NOT NULL,
    repository   text        NOT NULL,
    module       text        NOT NULL,
    path         text        NOT NULL,
    sha          text        NOT NULL,
    committed_at timestamptz NOT NULL,
    content      text        NOT NULL,
    model        text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX module_docs_latest ON module_docs (scope, module, committed_at DESC);
"""),
]


@dataclass(frozen=True)
class ModuleDoc:
    """The documentation of one module as of one commit."""

    task_id: str
    scope: str
    repository: str
    module: str
    path: str
    sha: str
    committed_at_ms: int
    content: str
    model: str


def setup_docs(conn: psycopg.Connection) -> None:
    """Create the table if needed (migrations run once per version)."""
    apply_migrations(conn, MIGRATIONS)


def write_docs(conn: psycopg.Connection, docs: Iterable[ModuleDoc]) -> int:
    """Insert a batch; a task_id already stored is skipped. Returns the rows inserted."""
    rows = [(d.task_id, d.scope, d.repository, d.module, d.path, d.sha,
             datetime.fromtimestamp(d.committed_at_ms / 1000, UTC), d.content, d.model) for d in docs]
    if not rows:
        return 0
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany("INSERT INTO module_docs (task_id, scope, repository, module, path, sha, committed_at, "
                        "content, model) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (task_id) DO NOTHING", rows)
        return max(cur.rowcount, 0)  # the rows inserted across the batch (conflicts count 0)


def latest_doc(conn: psycopg.Connection, scope: str, module: str, repository: str | None = None) -> ModuleDoc | None:
    """The newest document of `module` (by commit time), optionally of one repository."""
    row = conn.execute(
        "SELECT task_id, scope, repository, module, path, sha, "
        "(extract(epoch FROM committed_at) * 1000)::bigint, content, model FROM module_docs "
        "WHERE scope = %s AND module = %s AND (%s::text IS NULL OR repository = %s) "
        "ORDER BY committed_at DESC, created_at DESC LIMIT 1", (scope, module, repository, repository)).fetchone()
    return ModuleDoc(*row) if row else None


def documented_shas(conn: psycopg.Connection, scope: str, repository: str) -> dict[str, set[str]]:
    """For each documented module of a repository, the commits it has documentation for."""
    found: dict[str, set[str]] = {}
    for module, sha in conn.execute("SELECT module, sha FROM module_docs WHERE scope = %s AND repository = %s",
                                    (scope, repository)):
        found.setdefault(module, set()).add(sha)
    return found
