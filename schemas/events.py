"""The shared vocabulary of the events: the values TaskRequested's fields take, and the tenant rule.

The .avsc files stay the contract: their defaults and the values their docs list are checked
against these in tests/unit/test_events.py, so the two cannot drift apart.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CAPABILITIES",
    "DEFAULT_CAPABILITY",
    "DEFAULT_OPTIMIZATION",
    "DEFAULT_PATTERN",
    "DEFAULT_TENANT",
    "OPTIMIZATIONS",
    "PATTERNS",
    "RESULT_STATUSES",
    "TENANT_NAME",
    "Record",
    "normal_tenant",
    "tenant_key_of",
    "tenant_of",
]

Record = dict[str, Any]
"""A decoded event: the Avro record as a dict."""

PATTERNS = ("fast", "balanced", "quality")
"""How a task runs (TaskRequested.pattern): one agent, agent then reviewer, or the reviewer judging candidates."""

OPTIMIZATIONS = ("cost", "quality", "speed", "balanced")
"""What the model router optimizes for (TaskRequested.optimization)."""

CAPABILITIES = frozenset({"planning", "coding", "research", "review", "testing", "documentation", "judging"})
"""What a task needs and an agent offers (TaskRequested.capability, agents.yaml)."""

RESULT_STATUSES = ("ok", "failed", "budget_exceeded", "rejected")
"""How a task ended (TaskResult.status); `rejected`: a field asked for something unknown, nothing ran."""

# TaskRequested's Avro defaults: what a field that is absent or empty means.
DEFAULT_PATTERN = "fast"
DEFAULT_OPTIMIZATION = "balanced"
DEFAULT_CAPABILITY = "coding"
DEFAULT_TENANT = "default"


TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
"""What a tenant name is once normalised: lower-case ASCII letters, digits, `.`, `_`, `-`; at most 64."""


def normal_tenant(name: str | None) -> str:
    """The one spelling of a tenant name: NFKC, case-folded, trimmed; empty is the default tenant.

    `ACME`, ` acme ` and the full-width form of acme are all `acme`, so none of them is a second budget. A name
    still outside TENANT_NAME after that (`acme\u200b`, `acme|x`) is a ValueError saying why: a task that
    claims it is dead-lettered, never charged to a tenant of its own.
    """
    folded = unicodedata.normalize("NFKC", name or "").casefold().strip()
    if not folded:
        return DEFAULT_TENANT
    if not TENANT_NAME.match(folded):
        raise ValueError(f"tenant {name!r} is not a valid name: lower-case letters, digits, '.', '_' and '-', "
                         "starting with a letter or digit, at most 64")
    return folded


def tenant_of(record: Mapping[str, Any]) -> str:
    """The tenant of a task or result; records without one (or with an empty one) belong to the default tenant."""
    return str(record.get("tenant") or DEFAULT_TENANT)


def tenant_key_of(task: Mapping[str, Any]) -> bytes:
    """The Kafka key that puts a task in its tenant's partition (budgets need every task of a tenant there)."""
    return tenant_of(task).encode()


def tenant_scoped(record: Mapping[str, Any], local_id: str) -> str:
    """`local_id` within the record's tenant (`acme/task-1`; as it is for the default tenant, so ids stored
    before tenants were part of them stay what they were)."""
    tenant = tenant_of(record)
    return local_id if tenant == DEFAULT_TENANT else f"{tenant}/{local_id}"


def task_identity(task: Mapping[str, Any]) -> str:
    """What makes a task one task: its id within its tenant. Another tenant's task with the same id is another
    task: it is neither skipped as done nor lets its answer replace this one's."""
    return tenant_scoped(task, task["task_id"])
