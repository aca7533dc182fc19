"""Module documentation: one document per (module, commit) in PostgreSQL (L3), also searchable in L2.

L3 (`module_docs`) is the record, written idempotently by task_id. Each document is also embedded into
the L2 vector tier as the memory event type `ModuleDoc` (event id `ModuleDoc:<task_id>`; its text leads
with the module, path and version), so a semantic search finds it; `search_docs` maps the hits back to
their L3 rows. `scope` is the topic prefix of the writer, in both tiers, so evaluation runs and tests
never mix their documents with production's.

`DocsTier` is how documentation results get there: a memory tier the sink processor drives
(`agentstream docs sink`), with the same backoff, rejections and dead letters as the other tiers. Only the
code-change processor's own documentation tasks count: their signature (schemas/provenance.py) must hold,
so a task that merely says `kind=documentation` never becomes a module's documentation. A signed result
whose fields cannot be stored (a commit time that is not a time) is rejected, i.e. dead-lettered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from schemas.events import Record
from schemas.provenance import verify_result
from sinks.base import MemoryRecord, Rejection, Tier
from sinks.migrations import Migration, apply_migrations
from sinks.pg import PgConnection
from sinks.vectors import VectorTier

__all__ = ["DOC_EVENT", "MIGRATIONS", "DocsTier", "ModuleDoc", "all_docs", "doc_from_result", "doc_memory",
           "documented_shas", "index_docs", "latest_doc", "search_docs", "setup_docs", "write_docs"]

DOC_EVENT = "ModuleDoc"
_COLUMNS = ("task_id, scope, repository, module, path, sha, (extract(epoch FROM committed_at) * 1000)::bigint, "
            "content, model")

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


_MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant PostgreSQL and Python agree on


def doc_from_result(result: Record, scope: str, key: bytes) -> ModuleDoc | None:
    """The document in a TaskResult, or None when it is not an ok documentation result of a task the
    code-change processor signed with `key`. A signed one that cannot be stored raises ValueError."""
    meta = result.get("metadata") or {}
    if meta.get("kind") != "documentation" or result.get("status") != "ok" or not meta.get("module"):
        return None
    if not verify_result(key, result):
        return None  # documentation by its own say-so: any client can write that
    committed_at = int(meta.get("committed_at") or 0)  # ValueError for "abc"
    if not 0 <= committed_at <= _MAX_TIME_MS:
        raise ValueError(f"committed_at {committed_at} is not a time")
    return ModuleDoc(result["task_id"], scope, meta.get("repository", ""), meta["module"], meta.get("path", ""),
                     meta.get("sha", ""), committed_at, result["output"], result["model"])


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
        f"SELECT {_COLUMNS} FROM module_docs "  # noqa: S608 - a fixed column list
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


def all_docs(conn: psycopg.Connection, scope: str) -> list[ModuleDoc]:
    """Every stored document of a scope, oldest commit first (to index them again)."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM module_docs WHERE scope = %s "  # noqa: S608 - fixed columns
                        "ORDER BY committed_at, task_id", (scope,)).fetchall()
    return [ModuleDoc(*row) for row in rows]


def doc_memory(doc: ModuleDoc) -> MemoryRecord:
    """A document as the memory record the vector tier embeds; its source is the L3 table, not a topic."""
    record = {"task_id": doc.task_id, "module": doc.module, "path": doc.path, "sha": doc.sha,
              "repository": doc.repository, "content": doc.content, "created_at": doc.committed_at_ms}
    return MemoryRecord(DOC_EVENT, record, "module_docs", 0, 0, doc.committed_at_ms)


def index_docs(vectors: Tier, docs: Sequence[ModuleDoc]) -> int:
    """Embed and upsert documents into L2; the same document always gets the same vector ids. Returns how many."""
    if docs:
        vectors.write([doc_memory(d) for d in docs])
    return len(docs)


def search_docs(conn: psycopg.Connection, vectors: VectorTier, scope: str, query: str,
                k: int = 5) -> list[tuple[ModuleDoc, float]]:
    """The documents closest in meaning to `query` (L2), as their L3 rows with the cosine similarity."""
    hits = vectors.search(query, k, {"event_type": DOC_EVENT})
    if not hits:
        return []
    rows = conn.execute(f"SELECT {_COLUMNS} FROM module_docs WHERE scope = %s "  # noqa: S608 - fixed columns
                        "AND task_id = ANY(%s)", (scope, [h.task_id for h in hits])).fetchall()
    found = {row[0]: ModuleDoc(*row) for row in rows}
    return [(found[h.task_id], h.score) for h in hits if h.task_id in found]


class DocsTier(Tier):
    """TaskResults -> the documents among them, stored in L3 (`module_docs`), then embedded in the L2 tier.

    Idempotent: L3 skips a task_id it has, L2 replaces a document's vectors. `stored` counts the rows
    L3 took (a document stored before counts 0). Either store down: TierUnavailable, the batch is retried.
    """

    name = "docs"

    def __init__(self, dsn: str, scope: str, vectors: Tier, key: bytes) -> None:
        self.pg = PgConnection(dsn, self.name, MIGRATIONS)
        self.scope, self.vectors, self.key = scope, vectors, key
        self.stored = 0

    def setup(self) -> None:
        with self.pg.use():  # connects and migrates
            pass
        self.vectors.setup()

    def write(self, batch: Sequence[MemoryRecord]) -> list[Rejection]:
        docs: list[ModuleDoc] = []
        rejected: list[Rejection] = []
        for item in batch:
            try:
                doc = doc_from_result(item.record, self.scope, self.key)
            except (KeyError, TypeError, ValueError) as exc:  # e.g. a committed_at that is not a number
                rejected.append(Rejection(item, f"not a documentation result: {type(exc).__name__}: {exc}"))
                continue
            if doc is not None:
                docs.append(doc)
        if docs:
            with self.pg.use() as conn:
                self.stored += write_docs(conn, docs)
            index_docs(self.vectors, docs)  # all of them: a batch written again replaces its vectors
        return rejected

    def close(self) -> None:
        self.pg.close()
        self.vectors.close()
