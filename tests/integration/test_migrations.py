from __future__ import annotations

import uuid

import psycopg
import pytest

from sinks.migrations import Migration, apply_migrations
from streams.settings import Settings

pytestmark = pytest.mark.integration


def test_migrations_apply_once_in_order_and_resume(stack_settings: Settings) -> None:
    component = f"test_{uuid.uuid4().hex[:8]}"
    table = f"{component}_things"
    first = [Migration(component, 1, f"CREATE TABLE {table} (id text PRIMARY KEY)")]
    second = [*first, Migration(component, 2, f"ALTER TABLE {table} ADD COLUMN n integer NOT NULL DEFAULT 0")]
    with psycopg.connect(stack_settings.postgres_dsn, autocommit=True) as conn:
        assert [m.version for m in apply_migrations(conn, first)] == [1]
        assert apply_migrations(conn, first) == []
        assert [m.version for m in apply_migrations(conn, second)] == [2]
        conn.execute(f"INSERT INTO {table} (id) VALUES ('a')")
        assert conn.execute(f"SELECT n FROM {table}").fetchone() == (0,)


def test_a_failing_migration_applies_nothing(stack_settings: Settings) -> None:
    component = f"test_{uuid.uuid4().hex[:8]}"
    steps = [Migration(component, 1, f"CREATE TABLE {component}_ok (id text)"),
             Migration(component, 2, "THIS IS NOT SQL")]
    with psycopg.connect(stack_settings.postgres_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.SyntaxError):
            apply_migrations(conn, steps)
        exists = conn.execute("SELECT to_regclass(%s)", (f"{component}_ok",)).fetchone()
        assert exists == (None,)
