"""The shared vocabulary agrees with the Avro contract, and the tenant rule is one rule."""

from __future__ import annotations

import re

from schemas import load_schemas
from schemas.events import (
    CAPABILITIES,
    DEFAULT_CAPABILITY,
    DEFAULT_OPTIMIZATION,
    DEFAULT_PATTERN,
    DEFAULT_TENANT,
    OPTIMIZATIONS,
    PATTERNS,
    RESULT_STATUSES,
    tenant_key_of,
    tenant_of,
)

SCHEMAS = load_schemas()


def _field(record: str, name: str) -> dict:
    return next(f for f in SCHEMAS[record]["fields"] if f["name"] == name)


def _listed(doc: str) -> tuple[str, ...]:
    """The values a field's doc lists as `a | b | c`."""
    return tuple(re.search(r":\s*([\w |]+)\.", doc).group(1).replace(" ", "").split("|"))


def test_patterns_and_optimizations_are_the_values_the_task_schema_lists() -> None:
    assert _listed(_field("TaskRequested", "pattern")["doc"]) == PATTERNS
    assert _listed(_field("TaskRequested", "optimization")["doc"]) == OPTIMIZATIONS
    assert _listed(_field("TaskResult", "status")["doc"]) == RESULT_STATUSES


def test_defaults_are_the_avro_defaults() -> None:
    assert _field("TaskRequested", "pattern")["default"] == DEFAULT_PATTERN in PATTERNS
    assert _field("TaskRequested", "optimization")["default"] == DEFAULT_OPTIMIZATION in OPTIMIZATIONS
    assert _field("TaskRequested", "capability")["default"] == DEFAULT_CAPABILITY in CAPABILITIES
    assert _field("TaskRequested", "tenant")["default"] == DEFAULT_TENANT
    assert _field("TaskResult", "tenant")["default"] == DEFAULT_TENANT


def test_a_missing_or_empty_tenant_is_the_default_tenant_and_its_key() -> None:
    assert tenant_of({"tenant": "acme"}) == "acme"
    assert tenant_of({}) == tenant_of({"tenant": ""}) == tenant_of({"tenant": None}) == DEFAULT_TENANT
    assert tenant_key_of({"tenant": "acme", "task_id": "t"}) == b"acme"
    assert tenant_key_of({"task_id": "t"}) == DEFAULT_TENANT.encode()
