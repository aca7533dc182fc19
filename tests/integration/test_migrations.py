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


def test_components_migrating_at_once_on_a_new_database_all_apply(stack_settings: Settings) -> None:
    """A worker and the sinks starting together on a new database (as `make demo` does): each component's
    migrations apply, none fails in PostgreSQL's catalog (two creations of the ledger table at once did,
    every time, with a lock per component)."""
    import threading

    from psycopg.conninfo import make_conninfo

    database = f"test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack_settings.postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    try:
        dsn, starters = make_conninfo(stack_settings.postgres_dsn, dbname=database), 6
        together, errors = threading.Barrier(starters), []

        def start(n: int) -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                together.wait()
                try:
                    apply_migrations(conn, [Migration(f"component_{n}", 1, f"CREATE TABLE things_{n} (id text)")])
                except psycopg.Error as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,)) for n in range(starters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (starters,)
    finally:
        with psycopg.connect(stack_settings.postgres_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {database} WITH (FORCE)")
