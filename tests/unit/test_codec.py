"""The event codec: Avro single-object encoding over the packaged schemas."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

import schemas
from schemas import MARKER, SCHEMA_DIR, Codec, DecodeError, EncodeError, default_codec, load_schemas

NOW_MS = 1_732_550_400_123  # 2024-11-25T16:00:00.123Z

# One realistic record per event type, together covering every Avro type the contract uses.
SAMPLES: dict[str, dict[str, Any]] = {
    "TaskRequested": {
        "task_id": "task-7f3c2a",
        "description": "Write a Python function that parses ISO-8601 durations, with tests.",
        "pattern": "quality",
        "capability": "coding",
        "optimization": "cost",
        "budget_usd": 0.25,  # union, non-null branch
        "tenant": "acme",
        "metadata": {"source": "api", "trace_id": "9b1e4f", "unicode": "naïve ✓"},
        "created_at": NOW_MS,
        "plan": "research",  # union, string branch (issue 15: the optional last field)
    },
    "AgentOutput": {
        "tenant": "acme",
        "output_id": "out-01J9Z",
        "task_id": "task-7f3c2a",
        "agent": "coder",
        "step": 2,
        "model": "anthropic/claude-sonnet-4-5",
        "attempt": 3,
        "status": "failed",
        "output": "",
        "tokens_in": 1834,
        "tokens_out": 0,
        "cost_usd": 0.005502,
        "latency_ms": 30012.5,
        "error": "timeout after 30s",  # union, string branch
        "metadata": {},
        "created_at": NOW_MS,
    },
    "TaskResult": {
        "task_id": "task-7f3c2a",
        "status": "ok",
        "output": "def parse_duration(s: str) -> timedelta: ...",
        "model": "openai/gpt-4o-mini",
        "cost_usd": 0.0123,
        "latency_ms": 4521.75,
        "steps": 3,
        "tokens_in": 5120,
        "tokens_out": 812,
        "tenant": "acme",
        "error": None,  # union, null branch
        "metadata": {"pattern": "quality"},
        "created_at": NOW_MS,
    },
    "PromptOutcome": {
        "outcome_id": "oc-1",
        "task_id": "task-7f3c2a",
        "experiment": "coder-system-prompt",
        "variant": "b",
        "success": True,
        "quality": 0.875,
        "source": "test",
        "created_at": NOW_MS,
    },
    "PromptDecision": {
        "decision_id": "dec-1",
        "experiment": "coder-system-prompt",
        "decision": "promote",
        "winner": "b",
        "reason": "b beats a with P(b>a)=0.97 after 400 outcomes",
        "stats": {"p_best_b": 0.97, "mean_a": 0.61, "mean_b": 0.72, "n": 400.0},  # map<double>
        "created_at": NOW_MS,
    },
    "CodeChange": {
        "sha": "3f786850e387550fdab836ed7e6dc881de23001b",
        "repository": "github.com/acme/widgets",
        "author": "Ada Lovelace <ada@example.com>",
        "committed_at": NOW_MS - 86_400_000,
        "message": "Fix rounding in invoice totals\n\nCloses #42.",
        "files": [  # array of records
            {"path": "src/invoice.py", "change": "modified", "added": 12, "removed": 4},
            {"path": "tests/test_invoice.py", "change": "added", "added": 40, "removed": 0},
            {"path": "old/legacy.py", "change": "deleted", "added": 0, "removed": 210},
        ],
        "patch": "diff --git a/src/invoice.py b/src/invoice.py\n...",
        "patch_truncated": True,
        "created_at": NOW_MS,
    },
    "DeadLetter": {
        "deadletter_id": "dl-1",
        "stage": "router",
        "topic": "agentstream.tasks.requested",
        "partition": 5,
        "offset": 2**40 + 17,  # needs a long
        "error": "DecodeError: bad marker",
        "payload": b'{"not": "avro"}\x00\xff',
        "key": b"\x00\x01task-7f3c2a",  # union, bytes branch
        "created_at": NOW_MS,
    },
    "ControlCommand": {
        "command_id": "cmd-1",
        "command": "lite_mode",
        "scope": "tenant",
        "tenant": "acme",
        "value": "on",
        "reason": "cost spike",
        "issued_by": "risk:cost_spike",
        "issued_at": NOW_MS,
        "expires_at": NOW_MS + 3_600_000,
    },
    "RiskAlert": {
        "alert_id": "key_exposure|acme|1",
        "kind": "key_exposure",
        "severity": "critical",
        "tenant": "acme",
        "summary": "credential-looking text in tasks",
        "details": {"kinds": "aws_access_key", "locations": "agent.tasks[2]@15 description"},
        "first_seen": NOW_MS,
        "last_seen": NOW_MS + 5,
        "count": 3,
    },
    "ToolCall": {
        "call_id": "t-1:1:0",
        "task_id": "t-1",
        "step": 1,
        "call_index": 0,
        "server": "filesystem",
        "tool": "write_file",
        "arguments": '{"path": "notes.txt"}',
        "status": "ok",
        "reused": False,
        "latency_ms": 4.5,
        "result_bytes": 22,
        "result_digest": "ab" * 32,
        "error": None,
        "plan": "simple",  # union, string branch
        "tenant": "acme",
        "started_at": NOW_MS - 5,
        "created_at": NOW_MS,
    },
}


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification gives it (an oracle independent of fastavro)."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


def test_all_event_types_are_packaged(codec: Codec) -> None:
    assert set(codec.names) == set(SAMPLES)
    assert codec.names == tuple(sorted(codec.names))
    assert {p.name for p in SCHEMA_DIR.glob("*.avsc")} == {
        "task_requested.avsc",
        "agent_output.avsc",
        "task_result.avsc",
        "prompt_outcome.avsc",
        "prompt_decision.avsc",
        "code_change.avsc",
        "dead_letter.avsc",
        "control_command.avsc",
        "risk_alert.avsc",
        "tool_call.avsc",
    }
    for name in codec.names:
        schema = codec.schema(name)
        assert schema["namespace"] == "agentstream.events"
        assert schema["doc"]


def test_public_names_are_reexported() -> None:
    assert set(schemas.__all__) <= set(dir(schemas))
    assert {"Codec", "DecodeError", "EncodeError", "load_schemas", "default_codec", "SCHEMA_DIR"} <= set(
        schemas.__all__
    )


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip(codec: Codec, name: str) -> None:
    data = codec.encode(name, SAMPLES[name])
    decoded_name, record = codec.decode(data)
    assert decoded_name == name
    assert record == SAMPLES[name]
    assert codec.decode_as(name, data) == SAMPLES[name]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_timestamps_stay_plain_ints(codec: Codec, name: str) -> None:
    _, record = codec.decode(codec.encode(name, SAMPLES[name]))
    field = {"ControlCommand": "issued_at", "RiskAlert": "first_seen"}.get(name, "created_at")
    assert type(record[field]) is int
    assert record[field] == NOW_MS


def test_timestamps_must_be_ints_when_encoding(codec: Codec) -> None:
    record = {**SAMPLES["TaskRequested"], "created_at": datetime.now(UTC)}
    with pytest.raises(EncodeError, match="created_at"):
        codec.encode("TaskRequested", record)


def test_defaults_fill_missing_fields(codec: Codec) -> None:
    minimal = {"task_id": "t", "description": "d", "created_at": NOW_MS}
    _, record = codec.decode(codec.encode("TaskRequested", minimal))
    assert record == {
        **minimal,
        "pattern": "fast",
        "capability": "coding",
        "optimization": "balanced",
        "budget_usd": None,
        "tenant": "default",
        "metadata": {},
        "plan": None,
    }
    change = {
        k: v for k, v in SAMPLES["CodeChange"].items() if k not in ("files", "patch", "patch_truncated")
    }
    change["files"] = [{"path": "a.py", "change": "renamed"}]
    _, record = codec.decode(codec.encode("CodeChange", change))
    assert record["files"] == [{"path": "a.py", "change": "renamed", "added": 0, "removed": 0}]
    assert record["patch"] == "" and record["patch_truncated"] is False


def test_null_branches_round_trip(codec: Codec) -> None:
    for name, field in [("TaskRequested", "budget_usd"), ("AgentOutput", "error"), ("DeadLetter", "key")]:
        record = {**SAMPLES[name], field: None}
        assert codec.decode_as(name, codec.encode(name, record))[field] is None
    record = {**SAMPLES["TaskResult"], "error": "boom"}
    assert codec.decode_as("TaskResult", codec.encode("TaskResult", record))["error"] == "boom"


def test_header_is_marker_and_fingerprint(codec: Codec) -> None:
    for name in codec.names:
        data = codec.encode(name, SAMPLES[name])
        assert data[:2] == b"\xc3\x01" == MARKER
        assert data[2:10] == codec.fingerprint(name)


# -- fingerprints ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canonical", "expected"),
    [  # Apache Avro share/test/data/schema-tests.txt, published as signed Java longs
        ('"null"', 7195948357588979594),
        ('"boolean"', -6970731678124411036),
        ('"int"', 8247732601305521295),
        ('"long"', -3434872931120570953),
        ('"double"', -8181574048448539266),
        ('"string"', -8142146995180207161),
    ],
)
def test_crc64_avro_known_values(canonical: str, expected: int) -> None:
    unsigned = expected % 2**64
    assert crc64_avro(canonical.encode()) == unsigned
    # fastavro gives the hex of the little-endian bytes, the order single-object encoding uses.
    assert bytes.fromhex(fastavro_fingerprint(canonical, "CRC-64-AVRO")) == unsigned.to_bytes(8, "little")


def test_fingerprint_is_crc64_of_canonical_form(codec: Codec) -> None:
    for name in codec.names:
        fp = codec.fingerprint(name)
        assert isinstance(fp, bytes) and len(fp) == 8
        canonical = to_parsing_canonical_form(fastavro.parse_schema(codec.schema(name)))
        assert fp == crc64_avro(canonical.encode()).to_bytes(8, "little")
    assert len({codec.fingerprint(n) for n in codec.names}) == len(codec.names)


# -- decode errors --------------------------------------------------------------------------


def test_wrong_marker(codec: Codec) -> None:
    with pytest.raises(DecodeError, match=r"bad marker: expected c3 01, got 7b 22") as err:
        codec.decode(json.dumps(SAMPLES["TaskResult"] | {"created_at": 0}).encode())
    assert err.value.reason == "marker"


def test_empty_bytes(codec: Codec) -> None:
    with pytest.raises(DecodeError, match="empty message") as err:
        codec.decode(b"")
    assert err.value.reason == "marker"


def test_truncated_header(codec: Codec) -> None:
    data = codec.encode("TaskRequested", SAMPLES["TaskRequested"])
    with pytest.raises(DecodeError, match="truncated header") as err:
        codec.decode(data[:6])
    assert err.value.reason == "fingerprint"


def test_unknown_fingerprint(codec: Codec) -> None:
    data = MARKER + bytes.fromhex("1a2b3c4d5e6f7081") + b"\x00"
    with pytest.raises(
        DecodeError, match=r"unknown schema fingerprint 1a2b3c4d5e6f7081; known: AgentOutput"
    ) as err:
        codec.decode(data)
    assert err.value.reason == "fingerprint"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_truncated_body(codec: Codec, name: str) -> None:
    data = codec.encode(name, SAMPLES[name])
    for cut in (11, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError, match=f"truncated or corrupt body for {name}") as err:
            codec.decode(data[:cut])
        assert err.value.reason == "body"


def test_header_only(codec: Codec) -> None:
    data = codec.encode("PromptOutcome", SAMPLES["PromptOutcome"])
    with pytest.raises(DecodeError) as err:
        codec.decode(data[:10])
    assert err.value.reason == "body"


def test_trailing_garbage(codec: Codec) -> None:
    data = codec.encode("PromptDecision", SAMPLES["PromptDecision"])
    with pytest.raises(DecodeError, match="3 trailing byte") as err:
        codec.decode(data + b"xyz")
    assert err.value.reason == "body"
    with pytest.raises(DecodeError) as err:
        codec.decode_as("PromptDecision", data + b"\x00")
    assert err.value.reason == "body"


def test_corrupt_body(codec: Codec) -> None:
    data = bytearray(codec.encode("TaskResult", SAMPLES["TaskResult"]))
    data[10] = 0x7F  # task_id length: -64, impossible
    with pytest.raises(DecodeError) as err:
        codec.decode(bytes(data))
    assert err.value.reason == "body"


def test_decode_accepts_bytes_like(codec: Codec) -> None:
    data = codec.encode("PromptOutcome", SAMPLES["PromptOutcome"])
    assert codec.decode(bytearray(data))[1] == SAMPLES["PromptOutcome"]
    assert codec.decode(memoryview(data))[1] == SAMPLES["PromptOutcome"]


def test_decode_as_other_type(codec: Codec) -> None:
    data = codec.encode("AgentOutput", SAMPLES["AgentOutput"])
    with pytest.raises(DecodeError, match="expected a TaskResult event, got AgentOutput") as err:
        codec.decode_as("TaskResult", data)
    assert err.value.reason == "type"
    with pytest.raises(ValueError, match="unknown event type 'Nope'"):
        codec.decode_as("Nope", data)


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(DecodeError, ValueError) and issubclass(EncodeError, ValueError)


# -- encode errors --------------------------------------------------------------------------


def test_encode_missing_required_field(codec: Codec) -> None:
    record = {k: v for k, v in SAMPLES["PromptOutcome"].items() if k != "success"}
    with pytest.raises(EncodeError, match=r"PromptOutcome: missing required field 'success'"):
        codec.encode("PromptOutcome", record)


def test_encode_wrong_type(codec: Codec) -> None:
    with pytest.raises(EncodeError, match=r"AgentOutput.*tokens_in"):
        codec.encode("AgentOutput", {**SAMPLES["AgentOutput"], "tokens_in": "many"})
    with pytest.raises(EncodeError, match=r"DeadLetter.*payload"):
        codec.encode("DeadLetter", {**SAMPLES["DeadLetter"], "payload": "not bytes"})
    with pytest.raises(EncodeError, match=r"CodeChange: .*FileChange\.change\) is None expected string"):
        codec.encode("CodeChange", {**SAMPLES["CodeChange"], "files": [{"path": "a.py"}]})


def test_encode_unknown_field(codec: Codec) -> None:
    with pytest.raises(EncodeError, match=r"TaskRequested: unknown field\(s\) 'budget'"):
        codec.encode("TaskRequested", {**SAMPLES["TaskRequested"], "budget": 1.0})


def test_encode_unknown_type(codec: Codec) -> None:
    with pytest.raises(EncodeError, match="unknown event type 'Task'; known: AgentOutput"):
        codec.encode("Task", SAMPLES["TaskRequested"])


# -- the wire format is the spec's ----------------------------------------------------------


def _foreign_schema(name: str) -> dict:
    """What an outside client has: the .avsc file, nothing else."""
    for path in SCHEMA_DIR.glob("*.avsc"):
        schema = json.loads(path.read_text())
        if schema["name"] == name:
            return schema
    raise LookupError(name)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_foreign_client_decodes(codec: Codec, name: str) -> None:
    """Decode with only fastavro, the .avsc file and the Avro spec's single-object rules."""
    parsed = fastavro.parse_schema(_foreign_schema(name))
    fp = crc64_avro(to_parsing_canonical_form(parsed).encode()).to_bytes(8, "little")

    data = codec.encode(name, SAMPLES[name])
    assert data[:2] == b"\xc3\x01" and data[2:10] == fp
    body = io.BytesIO(data[10:])
    record = fastavro.schemaless_reader(body, parsed)
    assert body.tell() == len(data) - 10
    # A stock reader applies the logical type; the instant is the same.
    expected = SAMPLES[name]
    for field, value in list(record.items()):
        if isinstance(value, datetime):
            assert value == datetime.fromtimestamp(expected[field] / 1000, UTC)
            record[field] = expected[field]
    assert record == expected


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_foreign_client_encodes(codec: Codec, name: str) -> None:
    """And the other way: bytes a stock client writes decode in the codec."""
    parsed = fastavro.parse_schema(_foreign_schema(name))
    fp = crc64_avro(to_parsing_canonical_form(parsed).encode()).to_bytes(8, "little")
    out = io.BytesIO()
    out.write(b"\xc3\x01" + fp)
    fastavro.schemaless_writer(out, parsed, SAMPLES[name])
    assert codec.decode(out.getvalue()) == (name, SAMPLES[name])


# -- loading --------------------------------------------------------------------------------


def test_load_schemas_and_schema_copy(codec: Codec) -> None:
    loaded = load_schemas()
    assert set(loaded) == set(codec.names)
    assert loaded["TaskRequested"] == codec.schema("TaskRequested")
    codec.schema("TaskRequested")["fields"].clear()  # a caller's copy, not the codec's
    assert codec.schema("TaskRequested")["fields"]


def test_load_schemas_empty_dir(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"no \.avsc files"):
        load_schemas(tmp_path)


def test_codec_from_a_subset() -> None:
    subset = Codec({"DeadLetter": load_schemas()["DeadLetter"]})
    assert subset.names == ("DeadLetter",)
    data = default_codec().encode("TaskRequested", SAMPLES["TaskRequested"])
    with pytest.raises(DecodeError) as err:
        subset.decode(data)
    assert err.value.reason == "fingerprint"


def test_default_codec_is_cached() -> None:
    assert default_codec() is default_codec()


def test_null_or_non_bytes_is_a_decode_error_not_a_crash() -> None:
    for value in (None, "C3 01 text", 42):
        with pytest.raises(DecodeError) as info:
            default_codec().decode(value)  # type: ignore[arg-type]
        assert info.value.reason == "marker"


@pytest.mark.parametrize("old", sorted(p.name for p in (SCHEMA_DIR / "history").glob("*.avsc")))
def test_records_written_with_an_earlier_version_still_decode(codec: Codec, old: str) -> None:
    """A record of an earlier schema (schemas/history/: AgentOutput before its tenant, TaskRequested before its
    plan) decodes with the default codec, the fields it lacks at their defaults: old topics still replay."""
    old_schema = json.loads((SCHEMA_DIR / "history" / old).read_text())
    name = old_schema["name"].rsplit(".", 1)[-1]
    old_fields = {f["name"] for f in old_schema["fields"]}
    old_record = {k: v for k, v in SAMPLES[name].items() if k in old_fields}
    old_bytes = Codec({name: old_schema}).encode(name, old_record)
    assert old_bytes[2:10] != codec.fingerprint(name)
    added = {f["name"]: f["default"] for f in codec.schema(name)["fields"] if f["name"] not in old_fields}
    assert added and codec.decode_as(name, old_bytes) == {**old_record, **added}
