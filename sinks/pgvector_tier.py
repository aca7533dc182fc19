"""The pgvector store of L2: one table of 384-d vectors with an HNSW index (cosine), in PostgreSQL.

Vectors travel in pgvector's binary form (`_vector_dumper`, a few lines here), so no extra client package is
needed: formatting a 384-d vector as text cost the client ~80 us a search and the server a parse, twice
(measured).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types import TypeInfo

from sinks.migrations import Migration
from sinks.pg import PgConnection
from sinks.vectors import VectorHit, VectorItem

__all__ = ["MIGRATIONS", "PgVectorStore"]

MIGRATIONS = [Migration("memory_vectors", 1, """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE memory_vectors (
    id uuid PRIMARY KEY, scope text NOT NULL, event_id text NOT NULL, event_type text NOT NULL,
    chunk integer NOT NULL, task_id text NOT NULL, tenant text NOT NULL, text text NOT NULL,
    model text NOT NULL, embedding vector(384) NOT NULL, created_at timestamptz NOT NULL);
CREATE INDEX memory_vectors_event ON memory_vectors (scope, event_id);
CREATE INDEX memory_vectors_hnsw ON memory_vectors USING hnsw (embedding vector_cosine_ops);
""")]

_UPSERT = """
INSERT INTO memory_vectors (id, scope, event_id, event_type, chunk, task_id, tenant, text, model, embedding, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %b, %s)
ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, model = EXCLUDED.model, embedding = EXCLUDED.embedding
"""


def _vector_dumper(oid: int) -> type[Dumper]:
    """A psycopg dumper of numpy arrays as pgvector `vector`s (this database's type `oid`), in its binary
    form: the dimensions and a reserved word (uint16 each), then the float32s, all big-endian."""

    class VectorDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: np.ndarray) -> bytes:
            return struct.pack(">HH", len(obj), 0) + np.asarray(obj, dtype=">f4").tobytes()

    VectorDumper.oid = oid
    return VectorDumper


def _on_connect(conn: psycopg.Connection, ef_search: int) -> None:
    conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
    info = TypeInfo.fetch(conn, "vector")
    if info is None:  # the migration creates the extension first: only a broken database gets here
        raise RuntimeError("pgvector's `vector` type is missing from the database")
    conn.adapters.register_dumper(np.ndarray, _vector_dumper(info.oid))


def _one_per_event(rows: list[tuple[Any, ...]]) -> list[VectorHit]:
    """The nearest chunk of each event, nearest first."""
    hits: dict[str, VectorHit] = {}
    for event_id, event_type, task_id, text, created_at, model, score in rows:
        if event_id not in hits:
            hits[event_id] = VectorHit(event_id, event_type, task_id, text, float(score),
                                       int(created_at.timestamp() * 1000), {"model": model})
    return list(hits.values())


class PgVectorStore:
    """pgvector backend; `scope` keeps deployments (and test runs) sharing a database apart."""

    name = "pgvector"

    def __init__(self, dsn: str, *, scope: str = "", ef_search: int = 64) -> None:
        self.scope = scope
        self.db = PgConnection(dsn, "vectors", MIGRATIONS, on_connect=lambda c: _on_connect(c, ef_search))

    def setup(self) -> None:
        with self.db.use():
            pass

    def upsert(self, items: Sequence[VectorItem]) -> None:
        rows = [(i.id, self.scope, i.event_id, i.event_type, i.chunk, i.task_id, i.tenant, i.text, i.model,
                 np.asarray(i.vector), datetime.fromtimestamp(i.created_at / 1000.0, tz=UTC)) for i in items]
        with self.db.use() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(_UPSERT, rows)

    def search(self, vector: np.ndarray, k: int, filters: dict[str, Any]) -> list[VectorHit]:
        """Nearest chunks by cosine distance, one hit per event, with optional type/tenant/task filters."""
        where, params = ["scope = %(scope)s"], {"scope": self.scope, "query": np.asarray(vector), "rows": k * 3}
        if filters.get("event_type"):
            where.append("event_type = %(event_type)s")
            params["event_type"] = filters["event_type"]
        if filters.get("tenant"):
            where.append("tenant = %(tenant)s")
            params["tenant"] = filters["tenant"]
        if filters.get("exclude_tasks"):
            where.append("task_id <> ALL(%(exclude)s)")
            params["exclude"] = list(filters["exclude_tasks"])
        # The query vector is named twice and sent once.
        sql = (f"SELECT event_id, event_type, task_id, text, created_at, model, "  # noqa: S608 - fixed fragments
               f"1 - (embedding <=> %(query)b) AS score FROM memory_vectors WHERE {' AND '.join(where)} "
               f"ORDER BY embedding <=> %(query)b LIMIT %(rows)s")
        with self.db.use() as conn:
            rows = conn.execute(sql, params).fetchall()
            hits = _one_per_event(rows)
            if len(hits) < k and filters.get("event_type"):
                # The HNSW scan yields its ef_search nearest rows and the filter runs after it: when the
                # memories nearest the query are all of other types, a typed search (`docs search`,
                # `memory search --type`) found nothing. Short of k, such a search is done exactly.
                with conn.transaction():
                    conn.execute("SET LOCAL enable_indexscan = off")
                    hits = _one_per_event(conn.execute(sql, params).fetchall())
        return hits[:k]

    def chunks(self) -> list[tuple[str, int, str, int]]:
        with self.db.use() as conn:
            rows = conn.execute("SELECT event_id, chunk, text, created_at FROM memory_vectors WHERE scope = %s",
                                (self.scope,)).fetchall()
        return [(e, c, t, int(at.timestamp() * 1000)) for e, c, t, at in rows]

    def count(self) -> int:
        with self.db.use() as conn:
            return conn.execute("SELECT count(*) FROM memory_vectors WHERE scope = %s", (self.scope,)).fetchone()[0]

    def close(self) -> None:
        self.db.close()
