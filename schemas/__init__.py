"""The public event contract of agentstream: Avro schemas (``*.avsc``) and their codec."""

from schemas.codec import (
    MARKER,
    SCHEMA_DIR,
    Codec,
    DecodeError,
    DecodeReason,
    EncodeError,
    default_codec,
    load_schemas,
)

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
