"""Versioned PostgreSQL schema migrations, applied at start, each exactly once.

Every component (memory tiers, prompt registry, ...) keeps its own ordered list of migrations;
the `schema_migrations` table records which (component, version) pairs ran. One advisory lock for
every component makes concurrent starters (several workers, a worker and the sinks) apply them once:
with a lock per component, two components creating the ledger table at once on a new database
collided in PostgreSQL's catalog (`CREATE TABLE IF NOT EXISTS` is not safe against itself).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

__all__ = ["Migration", "apply_migrations"]

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""

_LOCK = zlib.crc32(b"agentstream schema_migrations")


@dataclass(frozen=True)
class Migration:
    """One step of a component's schema; versions start at 1 and never change once released."""

    component: str
    version: int
    sql: str


def apply_migrations(conn: psycopg.Connection, migrations: Sequence[Migration]) -> list[Migration]:
    """Apply the migrations not applied yet, in version order, in one transaction; return them."""
    applied: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute(_LEDGER)
        done = set(conn.execute("SELECT component, version FROM schema_migrations").fetchall())
        for m in sorted(migrations, key=lambda m: (m.component, m.version)):
            if (m.component, m.version) in done:
                continue
            conn.execute(m.sql)
            conn.execute("INSERT INTO schema_migrations (component, version) VALUES (%s, %s)",
                         (m.component, m.version))
            applied.append(m)
    return applied
