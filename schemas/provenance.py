"""Which tasks a trusted processor made: an HMAC over the fields a consumer relies on.

Anyone who can submit a task can write `kind=documentation` into its metadata. So the code-change
processor signs the tasks it makes (`sign_task`) with a key only the workers and sinks hold; the
runner copies task metadata into the TaskResult and adds the digest of the description it actually
ran (`DESCRIPTION_DIGEST`); the docs sink stores a document only when `verify_result` holds. A copied
signature is no use with another description or other fields, and the same task id answered twice
is the same document.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["DESCRIPTION_DIGEST", "SIGNATURE", "SIGNED_FIELDS", "description_digest", "sign_task", "verify_result"]

SIGNATURE = "signature"
DESCRIPTION_DIGEST = "description_sha256"
SIGNED_FIELDS = ("source", "kind", "module", "path", "sha", "repository", "committed_at")


def description_digest(description: str) -> str:
    """What the signature binds the description by (the runner records it for the text it ran)."""
    return hashlib.sha256(description.encode()).hexdigest()


def _mac(key: bytes, task_id: str, metadata: Mapping[str, Any], digest: str) -> str:
    fields = [task_id, [str(metadata.get(f, "")) for f in SIGNED_FIELDS], digest]
    return hmac.new(key, json.dumps(fields).encode(), hashlib.sha256).hexdigest()


def sign_task(key: bytes, task: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the TaskRequested `task` with its signature in `metadata`."""
    meta = dict(task.get("metadata") or {})
    meta[SIGNATURE] = _mac(key, task["task_id"], meta, description_digest(task["description"]))
    return {**task, "metadata": meta}


def verify_result(key: bytes, result: Mapping[str, Any]) -> bool:
    """Whether the TaskResult answers a task `sign_task` signed, with the description it was signed with."""
    meta = result.get("metadata") or {}
    signature, digest = meta.get(SIGNATURE), meta.get(DESCRIPTION_DIGEST)
    if not isinstance(signature, str) or not isinstance(digest, str):
        return False
    return hmac.compare_digest(signature, _mac(key, str(result.get("task_id", "")), meta, digest))
