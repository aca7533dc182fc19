"""L3: structured facts in PostgreSQL: tasks, steps, costs, prompt outcomes and code changes.

Tables come from versioned migrations (component "memory"), applied when the tier connects.
Writes are batched `executemany` upserts keyed by (scope, event id): a redelivered record
updates its own row, never adds one. `scope` is the deployment's topic prefix, so several
deployments (or test runs) can share one database without seeing each other's memories.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from schemas.events import DEFAULT_TENANT, tenant_of
from sinks.base import Held, MemoryRecord, Rejection, Tier, digest
from sinks.base import event_id as event_id_of
from sinks.migrations import Migration
from sinks.pg import PgConnection
from sinks.text import summary

__all__ = ["MIGRATIONS", "PostgresTier"]

MIGRATIONS = [Migration("memory", 1, """
CREATE TABLE memory_tasks (
    scope text NOT NULL, task_id text NOT NULL, status text NOT NULL, output text NOT NULL,
    model text NOT NULL, cost_usd double precision NOT NULL, latency_ms double precision NOT NULL,
    steps integer NOT NULL, tokens_in integer NOT NULL, tokens_out integer NOT NULL,
    tenant text NOT NULL, error text, metadata jsonb NOT NULL, created_at timestamptz NOT NULL,
    PRIMARY KEY (scope, task_id));
CREATE TABLE memory_steps (
    scope text NOT NULL, output_id text NOT NULL, task_id text NOT NULL, agent text NOT NULL,
    step integer NOT NULL, model text NOT NULL, attempt integer NOT NULL, status text NOT NULL,
    output text NOT NULL, tokens_in integer NOT NULL, tokens_out integer NOT NULL,
    cost_usd double precision NOT NULL, latency_ms double precision NOT NULL, error text,
    metadata jsonb NOT NULL, created_at timestamptz NOT NULL,
    PRIMARY KEY (scope, output_id));
CREATE INDEX memory_steps_task ON memory_steps (scope, task_id);
CREATE TABLE memory_outcomes (
    scope text NOT NULL, outcome_id text NOT NULL, task_id text NOT NULL, experiment text NOT NULL,
    variant text NOT NULL, success boolean NOT NULL, quality double precision, source text NOT NULL,
    created_at timestamptz NOT NULL, PRIMARY KEY (scope, outcome_id));
CREATE INDEX memory_outcomes_experiment ON memory_outcomes (scope, experiment, variant);
CREATE TABLE memory_code_changes (
    scope text NOT NULL, sha text NOT NULL, repository text NOT NULL, author text NOT NULL,
    message text NOT NULL, files text[] NOT NULL, committed_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL, PRIMARY KEY (scope, sha));
CREATE INDEX memory_tasks_text ON memory_tasks USING gin (to_tsvector('english', output));
CREATE VIEW memory_costs AS
    SELECT scope, task_id, model, count(*) AS calls, sum(cost_usd) AS cost_usd,
           sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out
    FROM memory_steps GROUP BY scope, task_id, model;
"""), Migration("memory", 2, """
ALTER TABLE memory_tasks DROP CONSTRAINT memory_tasks_pkey, ADD PRIMARY KEY (scope, tenant, task_id);
ALTER TABLE memory_steps ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE memory_steps DROP CONSTRAINT memory_steps_pkey, ADD PRIMARY KEY (scope, tenant, output_id);
""")]
# v2: rows are keyed by tenant too: one tenant's task with another's task id is a row of its own, and an
# upsert never moves a row to another tenant.


def _ts(ms: Any) -> datetime:
    return datetime.fromtimestamp(int(ms or 0) / 1000.0, tz=UTC)


def _row_tasks(scope: str, r: dict[str, Any]) -> tuple[Any, ...]:
    return (scope, r["task_id"], r["status"], r["output"], r["model"], r["cost_usd"], r["latency_ms"],
            r.get("steps", 0), r.get("tokens_in", 0), r.get("tokens_out", 0), tenant_of(r),
            r.get("error"), json.dumps(r.get("metadata") or {}), _ts(r["created_at"]))


def _row_steps(scope: str, r: dict[str, Any]) -> tuple[Any, ...]:
    return (scope, tenant_of(r), r["output_id"], r["task_id"], r["agent"], r["step"], r["model"], r.get("attempt", 1),
            r["status"], r["output"], r.get("tokens_in", 0), r.get("tokens_out", 0), r.get("cost_usd", 0.0),
            r.get("latency_ms", 0.0), r.get("error"), json.dumps(r.get("metadata") or {}), _ts(r["created_at"]))


def _row_outcomes(scope: str, r: dict[str, Any]) -> tuple[Any, ...]:
    return (scope, r["outcome_id"], r["task_id"], r["experiment"], r["variant"], r["success"], r.get("quality"),
            r.get("source") or "", _ts(r["created_at"]))


def _row_changes(scope: str, r: dict[str, Any]) -> tuple[Any, ...]:
    return (scope, r["sha"], r["repository"], r["author"], r["message"], list(r.get("files") or []),
            _ts(r["committed_at"]), _ts(r["created_at"]))


def _upsert(table: str, columns: str, key: str) -> str:
    cols = [c.strip() for c in columns.split(",")]
    keys = {k.strip() for k in key.split(",")}
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in keys)
    marks = ", ".join(["%s"] * len(cols))
    return f"INSERT INTO {table} ({columns}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {updates}"  # noqa: S608


# event type -> (table, columns, key columns, row builder)
_SCHEMA = {
    "TaskResult": ("memory_tasks", "scope, task_id, status, output, model, cost_usd, latency_ms, steps, tokens_in, "
                   "tokens_out, tenant, error, metadata, created_at", "scope, tenant, task_id", _row_tasks),
    "AgentOutput": ("memory_steps", "scope, tenant, output_id, task_id, agent, step, model, attempt, status, output, "
                    "tokens_in, tokens_out, cost_usd, latency_ms, error, metadata, created_at",
                    "scope, tenant, output_id", _row_steps),
    "PromptOutcome": ("memory_outcomes", "scope, outcome_id, task_id, experiment, variant, success, quality, source, "
                      "created_at", "scope, outcome_id", _row_outcomes),
    "CodeChange": ("memory_code_changes", "scope, sha, repository, author, message, files, committed_at, created_at",
                   "scope, sha", _row_changes),
}
# event type -> (table, upsert statement, row builder)
_TABLES = {event_type: (table, _upsert(table, columns, key), build)
           for event_type, (table, columns, key, build) in _SCHEMA.items()}


def _canonical(row: Sequence[Any]) -> str:
    """A row as the integrity check hashes it, the same whether built for writing or read back."""
    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return round(value.timestamp() * 1000)
        if isinstance(value, str) and value[:1] == "{" and value[-1:] == "}":
            try:  # jsonb is written as JSON text and read back as a dict
                return json.loads(value)
            except ValueError:
                return value
        return value

    return json.dumps([plain(v) for v in row], sort_keys=True, default=str)


_SEARCH = """
SELECT 'TaskResult:' || CASE WHEN tenant = 'default' THEN '' ELSE tenant || '/' END || task_id, 'TaskResult',
       task_id, output, created_at,
       ts_rank(to_tsvector('english', output), q) AS rank
FROM memory_tasks, to_tsquery('simple', replace(plainto_tsquery('english', %(query)s)::text, '&', '|')) AS q
WHERE scope = %(scope)s AND to_tsvector('english', output) @@ q AND status = 'ok'
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s) AND task_id <> ALL(%(exclude)s)
ORDER BY rank DESC, created_at DESC LIMIT %(k)s
"""


# The text each remembered event type was recalled with, by id (what `fetch` gives back for a recorded id).
# Ids name a tenant other than the default one (`TaskResult:acme/task-1`, sinks/base.py `event_id`).
_FETCH = """
SELECT 'TaskResult:' || CASE WHEN m.tenant = 'default' THEN '' ELSE m.tenant || '/' END || m.task_id,
       'TaskResult', m.task_id, m.output, m.created_at
FROM memory_tasks m JOIN unnest(%(task_tenants)s::text[], %(tasks)s::text[]) AS w(tenant, id)
  ON m.tenant = w.tenant AND m.task_id = w.id WHERE m.scope = %(scope)s
UNION ALL
SELECT 'AgentOutput:' || CASE WHEN m.tenant = 'default' THEN '' ELSE m.tenant || '/' END || m.output_id,
       'AgentOutput', m.task_id, m.output, m.created_at
FROM memory_steps m JOIN unnest(%(output_tenants)s::text[], %(outputs)s::text[]) AS w(tenant, id)
  ON m.tenant = w.tenant AND m.output_id = w.id WHERE m.scope = %(scope)s
UNION ALL
SELECT 'CodeChange:' || sha, 'CodeChange', sha, message || E'\\nfiles: ' || array_to_string(files, ', '), created_at
FROM memory_code_changes WHERE scope = %(scope)s AND sha = ANY(%(shas)s)
"""


def _keys(key: str) -> list[tuple[str, str]]:
    """The (tenant, id) an id's key may stand for: `acme/task-1` is tenant acme's, or a default-tenant id
    with a slash in it; the row's own id, rebuilt in SQL, settles which."""
    tenant, sep, rest = key.partition("/")
    return [(DEFAULT_TENANT, key), (tenant, rest)] if sep and tenant and rest else [(DEFAULT_TENANT, key)]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(v) or _has_nul(k) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class PostgresTier(Tier):
    """L3 tables; `search` is the structured (full-text) fallback of retrieval."""

    name = "postgres"

    def __init__(self, dsn: str, *, scope: str = "") -> None:
        self.scope = scope
        self.db = PgConnection(dsn, self.name, MIGRATIONS)

    def setup(self) -> None:
        with self.db.use():
            pass

    def write(self, batch: Sequence[MemoryRecord]) -> list[Rejection]:
        rejected: list[Rejection] = []
        rows: dict[str, dict[str, tuple[Any, ...]]] = {}
        for item in batch:
            if item.event_type not in _TABLES:
                continue
            if _has_nul(item.record):  # PostgreSQL text cannot hold NUL: this record can never go in
                rejected.append(Rejection(item, "a text field holds a NUL character, which PostgreSQL refuses"))
                continue
            _, _, build = _TABLES[item.event_type]
            rows.setdefault(item.event_type, {})[item.id] = build(self.scope, item.record)  # last one wins
        if rows:
            with self.db.use() as conn, conn.transaction(), conn.cursor() as cur:
                for event_type, by_id in rows.items():
                    cur.executemany(_TABLES[event_type][1], list(by_id.values()))
        return rejected

    def search(self, query: str, k: int, tenant: str | None = None,
               exclude_tasks: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Full-text search over task results (any of the query's words), best first."""
        params = {"query": query, "scope": self.scope, "tenant": tenant, "exclude": list(exclude_tasks), "k": k}
        with self.db.use() as conn:
            rows = conn.execute(_SEARCH, params).fetchall()
        hits = []
        for event_id, event_type, task_id, output, created_at, rank in rows:
            hit = summary(event_type, event_id, {"task_id": task_id,
                                                 "created_at": int(created_at.timestamp() * 1000)}, output)
            hits.append({**hit, "score": float(rank)})
        return hits

    def fetch(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The events with these memory ids (`TaskResult:`, `AgentOutput:`, `CodeChange:`), in the order given;
        an id this tier does not hold is left out. What a faithful replay recalls instead of searching."""
        wanted: dict[str, list[tuple[str, str]]] = {"TaskResult": [], "AgentOutput": [], "CodeChange": []}
        for memory_id in ids:
            kind, _, key = memory_id.partition(":")
            if kind in wanted and key:
                wanted[kind].extend(_keys(key) if kind != "CodeChange" else [(DEFAULT_TENANT, key)])
        if not any(wanted.values()):
            return []
        params = {"scope": self.scope, "task_tenants": [t for t, _ in wanted["TaskResult"]],
                  "tasks": [i for _, i in wanted["TaskResult"]],
                  "output_tenants": [t for t, _ in wanted["AgentOutput"]],
                  "outputs": [i for _, i in wanted["AgentOutput"]], "shas": [i for _, i in wanted["CodeChange"]]}
        with self.db.use() as conn:
            rows = conn.execute(_FETCH, params).fetchall()
        found = {event_id: summary(event_type, event_id, {"task_id": task_id,
                                                          "created_at": int(created_at.timestamp() * 1000)}, text)
                 for event_id, event_type, task_id, text, created_at in rows}
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def fingerprint(self, item: MemoryRecord) -> str | None:
        if item.event_type not in _TABLES or _has_nul(item.record):
            return None
        return digest(_canonical(_TABLES[item.event_type][2](self.scope, item.record)))

    def fingerprints(self) -> dict[str, Held]:
        held: dict[str, Held] = {}
        with self.db.use() as conn:
            for event_type, (table, columns, _, _) in _SCHEMA.items():
                rows = conn.execute(f"SELECT {columns} FROM {table} WHERE scope = %s", (self.scope,))  # noqa: S608
                names = [c.strip() for c in columns.split(",")]
                for row in rows.fetchall():
                    values = dict(zip(names, row, strict=True))
                    held[event_id_of(event_type, values)] = Held(digest(_canonical(row)),
                                                              round(values["created_at"].timestamp() * 1000))
        return held

    def counts(self) -> dict[str, int]:
        with self.db.use() as conn:
            return {table: conn.execute(f"SELECT count(*) FROM {table} WHERE scope = %s",  # noqa: S608
                                        (self.scope,)).fetchone()[0]
                    for table, _, _ in _TABLES.values()}

    def count(self) -> int:
        return sum(self.counts().values())

    def close(self) -> None:
        self.db.close()
