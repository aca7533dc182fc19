"""Avro codec for the agentstream event contract.

Every event on a Kafka topic is Avro *single-object encoding*, exactly as the Avro
specification defines it::

    C3 01 | CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form (8 bytes, little-endian)
          | Avro binary body

Nothing project-specific is on the wire, so any client holding the ``.avsc`` files in this
folder can decode our topics. Logical types are not converted on the Python side: a
``timestamp-millis`` field is a plain ``int`` of epoch milliseconds both when encoding and
when decoding (fastavro would otherwise hand back ``datetime`` objects).
"""

from __future__ import annotations

import copy
import functools
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.utils import generate_one
from fastavro.validation import validate

__all__ = [
    "MARKER",
    "SCHEMA_DIR",
    "Codec",
    "DecodeError",
    "DecodeReason",
    "EncodeError",
    "default_codec",
    "load_schemas",
]

SCHEMA_DIR: Path = Path(__file__).resolve().parent
"""The folder of the ``.avsc`` files (shipped as package data)."""

MARKER: bytes = b"\xc3\x01"
"""The two-byte marker that opens every Avro single-object encoded message."""

_HEADER_LEN = len(MARKER) + 8

DecodeReason = Literal["marker", "fingerprint", "body", "type"]


class DecodeError(ValueError):
    """Bytes that cannot be decoded; ``reason`` says which part was wrong.

    One error type lets a consumer route every undecodable message to the dead-letter
    topic with a single ``except``, while ``reason`` keeps the cause machine-readable.
    """

    def __init__(self, reason: DecodeReason, message: str) -> None:
        super().__init__(message)
        self.reason: DecodeReason = reason


class EncodeError(ValueError):
    """A record that does not fit its schema (unknown type, missing field, wrong type)."""


def load_schemas(directory: Path = SCHEMA_DIR) -> dict[str, dict]:
    """Read every ``*.avsc`` file in ``directory``, keyed by the record's short name."""
    schemas: dict[str, dict] = {}
    for path in sorted(Path(directory).glob("*.avsc")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        name = _short_name(schema)
        if name in schemas:
            raise ValueError(f"duplicate schema {name!r} in {path}")
        schemas[name] = schema
    if not schemas:
        raise ValueError(f"no .avsc files in {directory}")
    return schemas


def _short_name(schema: Mapping[str, Any]) -> str:
    return str(schema["name"]).rsplit(".", 1)[-1]


def _strip_logical_types(schema: Any) -> Any:
    """Drop ``logicalType`` everywhere, so fastavro reads and writes the underlying primitive.

    Logical types do not change the binary encoding nor the Parsing Canonical Form, so the
    fingerprint and the wire bytes are unaffected; only the Python-side values are (ints
    instead of datetimes).
    """
    if isinstance(schema, dict):
        return {k: _strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical_types(v) for v in schema]
    return schema


def _schema_fingerprint(parsed: Any) -> bytes:
    """CRC-64-AVRO of the Parsing Canonical Form, as the 8 little-endian bytes put on the wire."""
    # fastavro returns the hex of the little-endian bytes (the Java implementation's order).
    return bytes.fromhex(_fastavro_fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


class Codec:
    """Encode and decode agentstream events as Avro single-object encoded bytes.

    Each schema is parsed once; decoding looks the writer schema up by fingerprint, so
    records written with an older or newer version of a type (see :meth:`register_writer`)
    are resolved to the current reader schema. The project's own earlier versions (kept in
    ``schemas/history/`` when a type gains a field) are registered by the default codec.
    """

    def __init__(self, schemas: Mapping[str, dict] | None = None) -> None:
        default = schemas is None
        if schemas is None:
            schemas = load_schemas()
        self._json: dict[str, dict] = {}
        self._parsed: dict[str, Any] = {}
        self._fingerprints: dict[str, bytes] = {}
        self._headers: dict[str, bytes] = {}
        self._required: dict[str, tuple[str, ...]] = {}
        self._fields: dict[str, frozenset[str]] = {}
        # fingerprint -> (short name, parsed writer schema, reader schema or None if the same)
        self._writers: dict[bytes, tuple[str, Any, Any]] = {}
        for key, schema in schemas.items():
            name = _short_name(schema)
            if key != name:
                raise ValueError(f"schema registered as {key!r} is named {name!r}")
            parsed = parse_schema(_strip_logical_types(schema))
            fp = _schema_fingerprint(parsed)
            if fp in self._writers:
                raise ValueError(f"{name} and {self._writers[fp][0]} have the same fingerprint")
            self._json[name] = copy.deepcopy(schema)
            self._parsed[name] = parsed
            self._fingerprints[name] = fp
            self._headers[name] = MARKER + fp
            self._required[name] = tuple(f["name"] for f in schema["fields"] if "default" not in f)
            self._fields[name] = frozenset(f["name"] for f in schema["fields"])
            self._writers[fp] = (name, parsed, None)
        self.names: tuple[str, ...] = tuple(sorted(self._json))
        if default:
            for old in sorted((SCHEMA_DIR / "history").glob("*.avsc")):  # records written before a change
                self.register_writer(json.loads(old.read_text(encoding="utf-8")))

    # -- introspection -------------------------------------------------------------------

    def schema(self, name: str) -> dict:
        """The JSON of the ``.avsc`` for ``name`` (a copy: the codec's own stays untouched)."""
        return copy.deepcopy(self._json[self._known(name)])

    def fingerprint(self, name: str) -> bytes:
        """The 8-byte CRC-64-AVRO fingerprint that follows the marker on the wire."""
        return self._fingerprints[self._known(name)]

    def _known(self, name: str) -> str:
        if name not in self._json:
            raise ValueError(f"unknown event type {name!r}; known: {', '.join(self.names)}")
        return name

    # -- encoding ------------------------------------------------------------------------

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Encode ``record`` as event type ``name``; missing fields that have defaults get them.

        Unknown keys are rejected rather than silently dropped, so a misspelt optional field
        cannot quietly lose data.
        """
        parsed = self._parsed.get(name)
        if parsed is None:
            raise EncodeError(f"unknown event type {name!r}; known: {', '.join(self.names)}")
        for field in self._required[name]:
            if field not in record:
                raise EncodeError(f"{name}: missing required field {field!r}")
        if not self._fields[name].issuperset(record):
            unknown = sorted(set(record) - self._fields[name])
            raise EncodeError(f"{name}: unknown field(s) {', '.join(map(repr, unknown))}")
        out = io.BytesIO()
        out.write(self._headers[name])
        try:
            schemaless_writer(out, parsed, record)
        except Exception as exc:
            raise EncodeError(f"{name}: {self._explain(parsed, record, exc)}") from exc
        return out.getvalue()

    @staticmethod
    def _explain(parsed: Any, record: Mapping[str, Any], exc: Exception) -> str:
        """A readable reason for a failed write (only paid on the error path)."""
        try:
            validate(record, parsed, raise_errors=True)
        except Exception as verr:  # fastavro's ValidationError names the field path
            details = getattr(verr, "errors", None)
            return "; ".join(map(str, details)) if details else str(verr)
        return f"{type(exc).__name__}: {exc}"

    # -- decoding ------------------------------------------------------------------------

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """Decode one message to ``(short name, record)`` in the current reader schema."""
        name, writer, reader = self._writer_for(data)
        return name, self._read_body(name, writer, reader, data)

    def decode_as(self, name: str, data: bytes) -> dict[str, Any]:
        """Decode one message that must be of event type ``name`` (else reason ``"type"``)."""
        self._known(name)
        actual, writer, reader = self._writer_for(data)
        if actual != name:
            raise DecodeError("type", f"expected a {name} event, got {actual}")
        return self._read_body(name, writer, reader, data)

    def _writer_for(self, data: bytes) -> tuple[str, Any, Any]:
        if not isinstance(data, bytes | bytearray | memoryview):
            # A tombstone (null value) or a wrong type must be an ordinary decode failure, not a crash.
            raise DecodeError("marker", f"no bytes to decode: got {type(data).__name__} (a null/tombstone value?)")
        head = bytes(data[:_HEADER_LEN])
        if head[:2] != MARKER:
            got = head[:2].hex(" ") or "nothing (empty message)"
            raise DecodeError(
                "marker", f"bad marker: expected c3 01, got {got} (not Avro single-object encoding)"
            )
        if len(head) < _HEADER_LEN:
            raise DecodeError(
                "fingerprint", f"truncated header: {len(head)} bytes, the marker and fingerprint need 10"
            )
        entry = self._writers.get(head[2:])
        if entry is None:
            raise DecodeError(
                "fingerprint",
                f"unknown schema fingerprint {head[2:].hex()}; known: {', '.join(self.names)}",
            )
        return entry

    @staticmethod
    def _read_body(name: str, writer: Any, reader: Any, data: bytes) -> dict[str, Any]:
        buf = io.BytesIO(data)
        buf.seek(_HEADER_LEN)
        try:
            record = schemaless_reader(buf, writer, reader)
        except Exception as exc:  # fastavro raises EOFError, StructError, UnicodeDecodeError, ...
            raise DecodeError(
                "body", f"truncated or corrupt body for {name}: {type(exc).__name__}: {exc}"
            ) from exc
        extra = len(data) - buf.tell()
        if extra:
            raise DecodeError(
                "body", f"corrupt body for {name}: {extra} trailing byte(s) after a complete record"
            )
        return record  # type: ignore[return-value]

    # -- schema evolution ----------------------------------------------------------------

    def register_writer(self, schema: dict) -> None:
        """Accept records written with another version of a known event type.

        Such records are resolved to the current reader schema by Avro schema resolution
        (fields the writer lacks get their defaults; fields the reader lacks are skipped).
        The pair is checked now, so an incompatible version fails here and not per message.
        """
        name = _short_name(schema)
        if name not in self._json:
            raise ValueError(f"unknown event type {name!r}; known: {', '.join(self.names)}")
        writer = parse_schema(_strip_logical_types(schema))
        fp = _schema_fingerprint(writer)
        known = self._writers.get(fp)
        if known is not None:
            if known[0] != name:
                raise ValueError(f"fingerprint of {name} already belongs to {known[0]}")
            return
        reader = self._parsed[name]
        writer_fields = {f["name"] for f in schema.get("fields", [])}
        lacking = [
            f["name"]
            for f in self._json[name]["fields"]
            if f["name"] not in writer_fields and "default" not in f
        ]
        if lacking:
            raise ValueError(
                f"{name}: writer schema lacks field(s) {', '.join(lacking)} that have no default "
                "in the current schema"
            )
        # Prove the resolution works on a sample record before any real message depends on it.
        sample = io.BytesIO()
        schemaless_writer(sample, writer, generate_one(writer))
        sample.seek(0)
        try:
            schemaless_reader(sample, writer, reader)
        except Exception as exc:
            raise ValueError(f"{name}: writer schema cannot be resolved to the current one: {exc}") from exc
        self._writers[fp] = (name, writer, reader)


@functools.cache
def default_codec() -> Codec:
    """The process-wide codec over the packaged schemas (parsed once)."""
    return Codec()
