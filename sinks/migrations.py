"""Versioned PostgreSQL schema migrations, applied at start, each exactly once.

Every component (memory tiers, prompt registry, ...) keeps its own ordered list of migrations;
the `schema_migrations` table records which (component, version) pairs ran. An advisory lock makes
concurrent starters (several workers) apply them once.
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
        for component in sorted({m.component for m in migrations}):
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(component.encode()),))
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
