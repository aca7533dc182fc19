"""The prompt registry in PostgreSQL: versioned templates, experiments, their statistics and decisions.

Versions are immutable once added (a new text is a new version); one version per name is primary,
the one tasks use when no experiment runs. An experiment compares versions of one prompt; its
variants are named `v<version>`. The scoring processor writes each experiment's per-variant
statistics and a history point per counted outcome here, for bandit assignment and for reports.
The DSN is passed in: this module never reads the environment; it connects through sinks/pg.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from agents.prompt_templates import DEFAULT_LIMITS, RenderLimits, check_template, template_variables
from sinks.migrations import Migration, apply_migrations
from sinks.pg import connect

if TYPE_CHECKING:  # the scoring step imports this module
    from agents.experiment_scoring import ScoreStep

__all__ = ["MIGRATIONS", "Experiment", "PromptRegistry", "PromptVersion", "RegistryError", "variant_version"]

MIGRATIONS: tuple[Migration, ...] = (
    Migration("prompts", 1, """
CREATE TABLE prompt_versions (
    name        text        NOT NULL,
    version     integer     NOT NULL,
    template    text        NOT NULL,
    variables   text[]      NOT NULL DEFAULT '{}',
    metadata    jsonb       NOT NULL DEFAULT '{}',
    author      text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    is_primary  boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX prompt_versions_one_primary ON prompt_versions (name) WHERE is_primary;
CREATE TABLE prompt_experiments (
    name        text             PRIMARY KEY,
    prompt      text             NOT NULL,
    variants    text[]           NOT NULL,
    weights     double precision[] NOT NULL,
    mode        text             NOT NULL,
    metric      text             NOT NULL,
    min_samples integer          NOT NULL,
    alpha       double precision NOT NULL,
    status      text             NOT NULL DEFAULT 'running',
    decision    text,
    winner      text,
    reason      text,
    decided_at  timestamptz,
    stopped_at  timestamptz,
    created_at  timestamptz      NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX prompt_experiments_one_running ON prompt_experiments (prompt) WHERE status = 'running';
CREATE TABLE prompt_experiment_arms (
    experiment  text        NOT NULL,
    variant     text        NOT NULL,
    stats       jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment, variant)
);
CREATE TABLE prompt_experiment_history (
    experiment  text        NOT NULL,
    seq         integer     NOT NULL,
    stats       jsonb       NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment, seq)
);
"""),
    Migration("prompts", 2, """
CREATE TABLE prompt_experiment_state (
    experiment  text        PRIMARY KEY,
    state       jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE prompt_outcomes_counted (
    outcome_id  text        PRIMARY KEY,
    experiment  text        NOT NULL,
    seq         integer     NOT NULL,
    counted_at  timestamptz NOT NULL DEFAULT now()
);
"""),
)


class RegistryError(LookupError):
    """A prompt, version or experiment that does not exist, or a request that cannot be met."""


def variant_version(variant: str) -> int:
    """`v2` (or `2`) -> 2."""
    text = variant.strip().lower().removeprefix("v")
    if not text.isdigit():
        raise RegistryError(f"variant {variant!r} is not a prompt version (expected v1, v2, ...)")
    return int(text)


@dataclass(frozen=True)
class PromptVersion:
    """One immutable version of a named template."""

    name: str
    version: int
    template: str
    variables: list[str]
    metadata: dict[str, Any]
    author: str
    created_at: datetime
    is_primary: bool


@dataclass(frozen=True)
class Experiment:
    """An A/B(/n) experiment over versions of one prompt; the first variant is the control."""

    name: str
    prompt: str
    variants: list[str]
    weights: list[float] = field(default_factory=list)
    mode: str = "split"
    metric: str = "success"
    min_samples: int = 100
    alpha: float = 0.05
    status: str = "running"
    decision: str | None = None
    winner: str | None = None
    reason: str | None = None
    decided_at: datetime | None = None
    created_at: datetime | None = None


class PromptRegistry:
    """Reads and writes the registry over one connection (autocommit; writes in transactions)."""

    def __init__(self, dsn: str, limits: RenderLimits = DEFAULT_LIMITS) -> None:
        self._dsn = dsn
        self.limits = limits  # what a new version must render within (tested with a sample task)
        self._conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._dsn, row_factory=dict_row)
        return self._conn

    def migrate(self) -> PromptRegistry:
        """Create or upgrade the registry's tables (a plain connection: the helper reads tuple rows)."""
        with connect(self._dsn) as conn:
            apply_migrations(conn, MIGRATIONS)
        return self

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    # -- versions --------------------------------------------------------------------------------

    def add_version(self, name: str, template: str, *, author: str = "", metadata: dict[str, Any] | None = None
                    ) -> PromptVersion:
        """Store `template` as the next version of `name`; the first version becomes primary.

        It is rendered once with sample variables first: TemplateRenderError (TemplateLimitError for a broken
        limit) says why a template that a task could not use is refused."""
        variables = template_variables(template)  # also proves it parses
        check_template(template, self.limits, capability=name)
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"prompt:{name}",))
            row = self.conn.execute("SELECT coalesce(max(version), 0) AS v FROM prompt_versions WHERE name = %s",
                                    (name,)).fetchone()
            version = int(row["v"]) + 1
            self.conn.execute(
                "INSERT INTO prompt_versions (name, version, template, variables, metadata, author, is_primary) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (name, version, template, variables, json.dumps(metadata or {}), author, version == 1))
        return self.get(name, version)

    def get(self, name: str, version: int | None = None) -> PromptVersion:
        """A version; by default the primary one."""
        if version is None:
            row = self.conn.execute("SELECT * FROM prompt_versions WHERE name = %s ORDER BY is_primary DESC, "
                                    "version DESC LIMIT 1", (name,)).fetchone()
        else:
            row = self.conn.execute("SELECT * FROM prompt_versions WHERE name = %s AND version = %s",
                                    (name, version)).fetchone()
        if row is None:
            raise RegistryError(f"no prompt {name!r}" + (f" version {version}" if version is not None else ""))
        return PromptVersion(**row)

    def versions(self, name: str | None = None) -> list[PromptVersion]:
        rows = self.conn.execute("SELECT * FROM prompt_versions WHERE %s::text IS NULL OR name = %s "
                                 "ORDER BY name, version", (name, name)).fetchall()
        return [PromptVersion(**r) for r in rows]

    def set_primary(self, name: str, version: int) -> None:
        self.get(name, version)
        with self.conn.transaction():
            self.conn.execute("UPDATE prompt_versions SET is_primary = false WHERE name = %s AND is_primary", (name,))
            self.conn.execute("UPDATE prompt_versions SET is_primary = true WHERE name = %s AND version = %s",
                              (name, version))

    # -- experiments -----------------------------------------------------------------------------

    def start_experiment(self, exp: Experiment) -> Experiment:
        if len(exp.variants) < 2:
            raise RegistryError("an experiment needs at least two variants")
        for v in exp.variants:
            self.get(exp.prompt, variant_version(v))
        weights = exp.weights or [1.0] * len(exp.variants)
        if len(weights) != len(exp.variants):
            raise RegistryError(f"{len(weights)} weights for {len(exp.variants)} variants")
        try:
            self.conn.execute(
                "INSERT INTO prompt_experiments (name, prompt, variants, weights, mode, metric, min_samples, alpha) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (exp.name, exp.prompt, exp.variants, weights, exp.mode, exp.metric, exp.min_samples, exp.alpha))
        except psycopg.errors.UniqueViolation as exc:
            raise RegistryError(f"experiment {exp.name!r} exists, or prompt {exp.prompt!r} already has a "
                                "running experiment") from exc
        return self.experiment(exp.name)

    def experiment(self, name: str) -> Experiment:
        row = self.conn.execute("SELECT * FROM prompt_experiments WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise RegistryError(f"no experiment {name!r}")
        return _experiment(row)

    def experiments(self, status: str | None = None) -> list[Experiment]:
        rows = self.conn.execute("SELECT * FROM prompt_experiments WHERE %s::text IS NULL OR status = %s "
                                 "ORDER BY created_at", (status, status)).fetchall()
        return [_experiment(r) for r in rows]

    def stop_experiment(self, name: str) -> Experiment:
        """Stop by hand: no more assignment; the primary version stays as it is."""
        self.experiment(name)
        self.conn.execute("UPDATE prompt_experiments SET status = 'stopped', stopped_at = now() "
                          "WHERE name = %s AND status = 'running'", (name,))
        return self.experiment(name)

    def record_decision(self, name: str, decision: str, winner: str | None, reason: str) -> bool:
        """Apply a decision once: on `promote` the winner becomes primary. False if already decided."""
        exp = self.experiment(name)
        with self.conn.transaction():
            updated = self.conn.execute(
                "UPDATE prompt_experiments SET status = 'decided', decision = %s, winner = %s, reason = %s, "
                "decided_at = now() WHERE name = %s AND decision IS NULL", (decision, winner, reason, name)).rowcount
            if updated and decision == "promote" and winner:
                version = variant_version(winner)
                self.conn.execute("UPDATE prompt_versions SET is_primary = false WHERE name = %s AND is_primary",
                                  (exp.prompt,))
                self.conn.execute("UPDATE prompt_versions SET is_primary = true WHERE name = %s AND version = %s",
                                  (exp.prompt, version))
        return bool(updated)

    # -- statistics written by the scoring processor ---------------------------------------------

    def count_outcome(self, name: str, outcome_id: str, step: Callable[[dict[str, Any] | None], ScoreStep]
                      ) -> ScoreStep | None:
        """Count an outcome once, in one transaction: its id, the experiment's new state (`step` of the
        stored one), each variant's statistics, a history point, and the decision it takes, if any.
        None when the id was counted already (a redelivered outcome). Outcomes of one experiment
        are counted one at a time, whichever worker reads them."""
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"experiment:{name}",))
            if self.conn.execute("SELECT 1 FROM prompt_outcomes_counted WHERE outcome_id = %s",
                                 (outcome_id,)).fetchone() is not None:
                return None
            row = self.conn.execute("SELECT state FROM prompt_experiment_state WHERE experiment = %s",
                                    (name,)).fetchone()
            result = step(None if row is None else row["state"])
            n = int(result.state["n"])
            self.conn.execute("INSERT INTO prompt_outcomes_counted (outcome_id, experiment, seq) VALUES (%s, %s, %s)",
                              (outcome_id, name, n))
            self.conn.execute(
                "INSERT INTO prompt_experiment_state (experiment, state) VALUES (%s, %s) ON CONFLICT (experiment) "
                "DO UPDATE SET state = excluded.state, updated_at = now()", (name, json.dumps(result.state)))
            self.save_stats(name, result.state["arms"], n, result.point)
            if result.decision is not None:
                d = result.decision
                self.record_decision(name, d.decision, d.winner, d.reason)
        return result

    def experiment_state(self, name: str) -> dict[str, Any] | None:
        """The scoring state of an experiment (None before its first outcome)."""
        row = self.conn.execute("SELECT state FROM prompt_experiment_state WHERE experiment = %s", (name,)).fetchone()
        return None if row is None else row["state"]

    def save_stats(self, name: str, arms: dict[str, dict[str, Any]], seq: int, point: dict[str, float]) -> None:
        """Upsert each variant's statistics and add history point `seq` (idempotent on replay)."""
        with self.conn.transaction():
            for variant, stats in arms.items():
                self.conn.execute(
                    "INSERT INTO prompt_experiment_arms (experiment, variant, stats) VALUES (%s, %s, %s) "
                    "ON CONFLICT (experiment, variant) DO UPDATE SET stats = excluded.stats, updated_at = now()",
                    (name, variant, json.dumps(stats)))
            self.conn.execute("INSERT INTO prompt_experiment_history (experiment, seq, stats) VALUES (%s, %s, %s) "
                              "ON CONFLICT DO NOTHING", (name, seq, json.dumps(point)))

    def arm_stats(self, name: str) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute("SELECT variant, stats FROM prompt_experiment_arms WHERE experiment = %s",
                                 (name,)).fetchall()
        return {r["variant"]: r["stats"] for r in rows}

    def history(self, name: str) -> list[tuple[int, dict[str, float]]]:
        rows = self.conn.execute("SELECT seq, stats FROM prompt_experiment_history WHERE experiment = %s "
                                 "ORDER BY seq", (name,)).fetchall()
        return [(r["seq"], r["stats"]) for r in rows]


def _experiment(row: dict[str, Any]) -> Experiment:
    fields = {k: row[k] for k in Experiment.__dataclass_fields__ if k in row}
    return Experiment(**fields)
