"""Schema evolution: records written with other versions of a schema still decode.

``tests/data/schemas_v1/`` is a frozen copy of the first published schemas. Never edit it:
it is what old producers on the topics were built with.
"""

from __future__ import annotations

import copy
import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.utils import generate_one

from schemas import Codec, DecodeError, load_schemas

V1_DIR = Path(__file__).resolve().parents[1] / "data" / "schemas_v1"
V1 = load_schemas(V1_DIR)
CURRENT = load_schemas()


def single_object(schema: dict, record: dict[str, Any]) -> bytes:
    """Encode as a producer built with ``schema`` would: plain fastavro and the spec's framing."""
    parsed = fastavro.parse_schema(schema)
    out = io.BytesIO()
    out.write(b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")))
    fastavro.schemaless_writer(out, parsed, record)
    return out.getvalue()


def sample(schema: dict, seed: int) -> dict[str, Any]:
    random.seed(seed)
    return generate_one(fastavro.parse_schema(schema))  # type: ignore[return-value]


def resolved(reader: dict, written: dict[str, Any]) -> dict[str, Any]:
    """What Avro resolution must give: the reader's fields, from the writer or else the default."""
    out = {}
    for field in reader["fields"]:
        value = written[field["name"]] if field["name"] in written else copy.deepcopy(field["default"])
        ftype = field["type"]
        if isinstance(ftype, dict) and ftype["type"] == "array" and isinstance(ftype["items"], dict):
            if ftype["items"].get("type") == "record":
                value = [resolved(ftype["items"], item) for item in value]
        out[field["name"]] = value
    return out


def record_fields(schema: dict, prefix: str = "") -> Iterator[tuple[str, dict]]:
    """Every field of a record schema, nested records included, as ``(path, field)``."""
    for field in schema["fields"]:
        path = f"{prefix}{field['name']}"
        yield path, field
        yield from _nested(field["type"], path)


def _nested(ftype: Any, path: str) -> Iterator[tuple[str, dict]]:
    if isinstance(ftype, list):
        for branch in ftype:
            yield from _nested(branch, path)
    elif isinstance(ftype, dict):
        if ftype["type"] == "record":
            yield from record_fields(ftype, f"{path}.")
        elif ftype["type"] == "array":
            yield from _nested(ftype["items"], f"{path}[]")
        elif ftype["type"] == "map":
            yield from _nested(ftype["values"], f"{path}{{}}")


def edit_fields(schema: dict, *, drop: tuple[str, ...] = (), add: tuple[tuple[int, dict], ...] = ()) -> dict:
    """A copy of ``schema`` with fields dropped and/or inserted (at index) — another version of it."""
    other = copy.deepcopy(schema)
    other["fields"] = [f for f in other["fields"] if f["name"] not in drop]
    for index, field in add:
        other["fields"].insert(index, field)
    return other


# -- (1) the v1 baseline --------------------------------------------------------------------


def test_baseline_is_complete() -> None:
    """Every event type ever published still exists (consumers depend on it)."""
    assert set(V1) <= set(CURRENT)
    assert set(CURRENT) - set(V1) == {"ToolCall", "ControlCommand", "RiskAlert"}  # issues 15 and 14
    assert set(V1) == {
        "TaskRequested",
        "AgentOutput",
        "TaskResult",
        "PromptOutcome",
        "PromptDecision",
        "CodeChange",
        "DeadLetter",
    }


@pytest.mark.parametrize("name", sorted(V1))
def test_v1_records_decode_with_current_schema(name: str) -> None:
    codec = Codec()
    codec.register_writer(V1[name])
    for seed in range(5):
        written = sample(V1[name], seed)
        decoded_name, record = codec.decode(single_object(V1[name], written))
        assert decoded_name == name
        assert record == resolved(CURRENT[name], written)


@pytest.mark.parametrize("name", sorted(V1))
def test_v1_readers_accept_current_records(name: str) -> None:
    """Full compatibility: a consumer still on v1 can read what current producers write."""
    old_codec = Codec(V1)
    old_codec.register_writer(CURRENT[name])
    written = sample(CURRENT[name], 7)
    decoded_name, record = old_codec.decode(Codec().encode(name, written))
    assert decoded_name == name
    assert record == resolved(V1[name], written)


# -- (2) constructed newer and older writers ------------------------------------------------


NEWER_TASK = edit_fields(
    CURRENT["TaskRequested"],
    add=(
        (2, {"name": "priority", "type": "int", "default": 0}),
        (99, {"name": "labels", "type": {"type": "array", "items": "string"}, "default": []}),
    ),
)
OLDER_TASK = edit_fields(CURRENT["TaskRequested"], drop=("tenant", "metadata", "budget_usd"))


def test_newer_writer_resolves() -> None:
    codec = Codec()
    written = {
        "task_id": "t-9",
        "description": "summarise the incident",
        "priority": 5,
        "labels": ["ops", "p1"],
        "tenant": "acme",
        "created_at": 1_732_550_400_000,
    }
    data = single_object(NEWER_TASK, written)
    with pytest.raises(DecodeError) as err:
        codec.decode(data)  # not registered yet: unknown fingerprint
    assert err.value.reason == "fingerprint"

    codec.register_writer(NEWER_TASK)
    name, record = codec.decode(data)
    assert name == "TaskRequested"
    assert "priority" not in record and "labels" not in record  # fields the reader lacks are skipped
    assert record == {
        "task_id": "t-9",
        "description": "summarise the incident",
        "pattern": "fast",
        "capability": "coding",
        "optimization": "balanced",
        "budget_usd": None,
        "tenant": "acme",
        "metadata": {},
        "created_at": 1_732_550_400_000,
        "plan": None,
    }
    assert type(record["created_at"]) is int
    # Current-version messages still decode next to the registered one.
    current = codec.encode("TaskRequested", record)
    assert codec.decode(current) == ("TaskRequested", record)


def test_older_writer_resolves_with_defaults() -> None:
    codec = Codec()
    codec.register_writer(OLDER_TASK)
    written = {"task_id": "t-1", "description": "d", "pattern": "quality", "created_at": 5}
    record = codec.decode_as("TaskRequested", single_object(OLDER_TASK, written))
    assert record["tenant"] == "default"
    assert record["metadata"] == {}
    assert record["budget_usd"] is None
    assert record["pattern"] == "quality"
    assert record["created_at"] == 5


def test_nested_record_evolution() -> None:
    """A field added to / removed from FileChange (inside the files array) resolves too."""
    current = CURRENT["CodeChange"]
    files_index = next(i for i, f in enumerate(current["fields"]) if f["name"] == "files")
    older = copy.deepcopy(current)
    file_change = older["fields"][files_index]["type"]["items"]
    file_change["fields"] = [f for f in file_change["fields"] if f["name"] != "removed"]
    file_change["fields"].append({"name": "mode", "type": "string", "default": "100644"})

    codec = Codec()
    codec.register_writer(older)
    written = sample(older, 3)
    record = codec.decode_as("CodeChange", single_object(older, written))
    assert record == resolved(current, written)
    assert all(f["removed"] == 0 and "mode" not in f for f in record["files"])


def test_task_plan_is_the_last_field_and_optional() -> None:
    """Issue 15: TaskRequested.plan is added at the end with a null default, so v1 producers and consumers
    both keep working: a v1 task reads as plan None; a task with a plan reads on v1 without it."""
    fields = CURRENT["TaskRequested"]["fields"]
    assert fields[-1]["name"] == "plan" and fields[-1]["default"] is None
    assert [f["name"] for f in fields[:-1]] == [f["name"] for f in V1["TaskRequested"]["fields"]]
    codec = Codec()
    codec.register_writer(V1["TaskRequested"])
    v1_task = {"task_id": "t", "description": "d", "pattern": "fast", "capability": "coding", "optimization": "cost",
               "budget_usd": None, "tenant": "a", "metadata": {}, "created_at": 1}
    assert codec.decode_as("TaskRequested", single_object(V1["TaskRequested"], v1_task))["plan"] is None
    old = Codec(V1)
    old.register_writer(CURRENT["TaskRequested"])
    read = old.decode_as("TaskRequested", Codec().encode("TaskRequested", {**v1_task, "plan": "complex"}))
    assert read == v1_task


def test_register_writer_rejects_incompatible_versions() -> None:
    codec = Codec()
    lacking_required = edit_fields(CURRENT["TaskRequested"], drop=("description",))
    with pytest.raises(ValueError, match=r"TaskRequested: writer schema lacks field.*description"):
        codec.register_writer(lacking_required)

    wrong_type = copy.deepcopy(CURRENT["TaskRequested"])
    wrong_type["fields"][0]["type"] = "int"  # task_id
    with pytest.raises(ValueError, match="cannot be resolved"):
        codec.register_writer(wrong_type)

    with pytest.raises(ValueError, match="unknown event type 'Invoice'"):
        codec.register_writer({"type": "record", "name": "Invoice", "fields": []})


def test_register_writer_is_idempotent() -> None:
    codec = Codec()
    codec.register_writer(CURRENT["AgentOutput"])  # the current schema itself: a no-op
    codec.register_writer(NEWER_TASK)
    codec.register_writer(NEWER_TASK)
    data = single_object(NEWER_TASK, sample(NEWER_TASK, 1))
    assert codec.decode(data)[0] == "TaskRequested"


# -- (3) guard rails for future edits -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(V1))
def test_fields_added_since_v1_have_defaults(name: str) -> None:
    """A field without a default would make every v1 record undecodable."""
    baseline = dict(record_fields(V1[name]))
    added = [
        path
        for path, field in record_fields(CURRENT[name])
        if path not in baseline and "default" not in field
    ]
    assert not added, f"{name}: fields added since v1 need a default: {added}"


@pytest.mark.parametrize("name", sorted(V1))
def test_fields_removed_since_v1_had_defaults(name: str) -> None:
    """Removing a field v1 readers require would break consumers still on v1."""
    current = dict(record_fields(CURRENT[name]))
    removed = [
        path for path, field in record_fields(V1[name]) if path not in current and "default" not in field
    ]
    assert not removed, f"{name}: removed fields that v1 readers require: {removed}"


@pytest.mark.parametrize("name", sorted(CURRENT))
def test_optional_fields_have_defaults(name: str) -> None:
    """Nullable fields default to null, so producers may omit them."""
    for path, field in record_fields(CURRENT[name]):
        if isinstance(field["type"], list) and "null" in field["type"]:
            assert field.get("default", "missing") is None, (
                f"{name}.{path}: a nullable field defaults to null"
            )
            assert field["type"][0] == "null", f"{name}.{path}: null must be the first union branch"
