"""What a CodeChange asks of the agents: a documentation task per changed Python module, a review per commit.

Task ids are derived from the sha (and module), so a redelivered or re-sent CodeChange asks for the
same tasks again under the same ids, and every store downstream (idempotent by task_id) keeps one.
"""

from __future__ import annotations

from agents.clock import now_ms
from agents.redaction import redact, redact_task
from schemas.events import Record
from schemas.provenance import sign_task
from streams.code.git import module_name

__all__ = ["DOC_PATCH_LIMIT", "REVIEW_PATCH_LIMIT", "file_patch", "tasks_for_change"]

DOC_PATCH_LIMIT = 3_000
REVIEW_PATCH_LIMIT = 6_000


def file_patch(patch: str, path: str) -> str:
    """The part of a commit's patch about one file ('' when the patch was cut before it)."""
    for section in patch.split("diff --git ")[1:]:
        if section.startswith(f"a/{path} ") or f" b/{path}\n" in section.split("\n", 1)[0] + "\n":
            return "diff --git " + section
    return ""


def tasks_for_change(change: Record, key: bytes) -> list[Record]:
    """TaskRequested records for one CodeChange: documentation per added/modified module, then a review.

    The commit message and patch are redacted here too: a CodeChange may come from any producer. Each task
    is signed with `key` (schemas/provenance.py), as redacted as the runner will see it, so the docs sink
    can tell this processor's documentation from a task that only says it is documentation."""
    sha, short = change["sha"], change["sha"][:12]
    message, patch = redact(change["message"]), redact(change["patch"])  # whole, before any cut
    subject = message.splitlines()[0] if message else ""
    common = {"sha": sha, "repository": change["repository"], "committed_at": str(change["committed_at"]),
              "source": "code.changes"}
    tasks: list[Record] = []
    for f in change["files"]:
        module = module_name(f["path"])
        if module is None or f["change"] == "deleted":
            continue
        body = file_patch(patch, f["path"])[:DOC_PATCH_LIMIT]
        tasks.append({
            "task_id": f"doc-{short}-{module}",
            "description": redact(f"Document the Python module `{module}` ({f['path']}) as of commit {short} "
                                  f"({subject}).\n\n{body}".rstrip()),
            "capability": "documentation", "pattern": "fast",
            "metadata": {**common, "kind": "documentation", "module": module, "path": f["path"]},
            "created_at": now_ms(),
        })
    files = ", ".join(f"{f['path']} ({f['change']} +{f['added']} -{f['removed']})" for f in change["files"][:30])
    tasks.append({
        "task_id": f"review-{short}",
        "description": redact(f"Review commit {short} by {change['author']}: {subject}\nFiles: {files}\n\n"
                              f"{patch[:REVIEW_PATCH_LIMIT]}".rstrip()),
        "capability": "review", "pattern": "fast",
        "metadata": {**common, "kind": "review"},
        "created_at": now_ms(),
    })
    return [sign_task(key, redact_task(task)) for task in tasks]
