"""The one way the project opens PostgreSQL: `connect`, and `PgConnection` (reconnecting) for the tiers.

The tiers (L2 pgvector, L3, the module docs), the prompt registry and the CLI all connect here, so a
connection's settings (autocommit, the connect timeout) are chosen once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from sinks.base import TierUnavailable
from sinks.migrations import Migration, apply_migrations

__all__ = ["CONNECT_TIMEOUT_S", "PgConnection", "connect"]

CONNECT_TIMEOUT_S = 3


def connect(dsn: str, *, row_factory: Any = None) -> psycopg.Connection[Any]:
    """An autocommit connection (writes that need one use `conn.transaction()`); fails within seconds."""
    return psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, row_factory=row_factory)


class PgConnection:
    """A lazily opened autocommit connection; a lost server becomes `TierUnavailable`, not a crash.

    One connection serves one thread at a time (the lock), which is what psycopg asks of it.
    """

    def __init__(self, dsn: str, tier: str, migrations: list[Migration],
                 on_connect: Callable[[psycopg.Connection], None] | None = None) -> None:
        self.dsn, self.tier, self.migrations = dsn, tier, migrations
        self._on_connect = on_connect
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[psycopg.Connection]:
        """The connection, opened (and migrated) if needed; connection failures raise TierUnavailable."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self.dsn)
                    apply_migrations(self._conn, self.migrations)
                    if self._on_connect is not None:
                        self._on_connect(self._conn)
                yield self._conn
            except psycopg.OperationalError as exc:
                self.close_now()
                raise TierUnavailable(self.tier, str(exc).strip()[:300], retry_after=1.0) from exc

    def close_now(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self.close_now()
