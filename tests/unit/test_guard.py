"""The processor guard and the processors' handlers, driven without Kafka."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from memory_helpers import outcome, output  # tests/memory_helpers.py (tests/ is on sys.path via its conftest)
from redaction_corpus import secrets

from agents.prompt_registry import PromptRegistry
from schemas import default_codec
from streams.processors.code_changes import CodeChangeHandler
from streams.processors.guard import Guard, Incoming, dead_letter
from streams.processors.scoring import OutputJudge

codec = default_codec()
# Never connected: the paths tested here end before the registry is asked anything.
UNREACHABLE = PromptRegistry("postgresql://nobody@127.0.0.1:1/none")


class Sent:
    """A `Send` that keeps what it was given, decoded."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, str, dict[str, Any]]] = []

    async def __call__(self, key: bytes | None, value: bytes) -> None:
        event_type, record = codec.decode(value)
        self.records.append((key, event_type, record))


def _incoming(value: bytes | None, key: bytes | None = b"k", offset: int = 7) -> Incoming:
    return Incoming(value, key, "t.code.changes", 2, offset)


def _change() -> dict[str, Any]:
    return {"sha": "abcdef1234567890", "repository": "/r", "author": "A <a@x>", "committed_at": 1000,
            "message": "subject", "patch": "diff --git a/pkg/a.py b/pkg/a.py\n+x = 1\n", "patch_truncated": False,
            "created_at": 1, "files": [{"path": "pkg/a.py", "change": "modified", "added": 1, "removed": 0}]}


def test_a_dead_letter_keeps_its_origin_bytes_and_a_stable_id() -> None:
    d = dead_letter("decode", Incoming(b"\x00raw", b"k", "agent.tasks", 2, 17), ValueError("bad marker"))
    assert d["deadletter_id"] == "agent.tasks:2:17:decode"
    assert d["payload"] == b"\x00raw" and d["key"] == b"k" and d["error"] == "ValueError: bad marker"
    assert dead_letter("decode", Incoming(None, None, "t", 0, 1), "tombstone")["payload"] == b""


def test_a_dead_letter_error_is_redacted_and_its_payload_is_the_original() -> None:
    """The payload must stay as it was (to be re-driven); the error text, logged and read by people, is redacted,
    before it is cut, so a secret across the cut does not leave half of itself."""
    (_, text, secret), (_, text2, secret2) = secrets(random.Random(3))[:2]
    raw = f"payload {text}".encode()
    error = ValueError(f"cannot parse {text}" + "." * 1990 + text2)
    d = dead_letter("decode", Incoming(raw, b"k", "agent.tasks", 0, 1), error)
    assert d["payload"] == raw and secret in d["payload"].decode()
    assert secret not in d["error"] and secret2[:10] not in d["error"] and "[REDACTED:" in d["error"]


def test_commit_messages_and_patches_reach_the_tasks_redacted() -> None:
    (_, in_message, secret), (_, in_patch, secret2) = secrets(random.Random(4))[:2]
    change = {**_change(), "message": f"add config {in_message}",
              "patch": f"diff --git a/pkg/a.py b/pkg/a.py\n+x = 1\n+{in_patch}\n"}
    dead, tasks = Sent(), Sent()
    asyncio.run(CodeChangeHandler(Guard(codec, dead), tasks, b"key")(_incoming(codec.encode("CodeChange", change))))
    assert len(tasks.records) == 2 and not dead.records
    for _, _, task in tasks.records:
        assert secret not in str(task) and secret2 not in str(task) and "[REDACTED:" in task["description"]


def test_undecodable_bytes_and_tombstones_become_dead_letters_with_where_they_came_from() -> None:
    dead, tasks = Sent(), Sent()
    handle = CodeChangeHandler(Guard(codec, dead), tasks, b"key")
    asyncio.run(handle(_incoming(b"not avro", offset=7)))
    asyncio.run(handle(_incoming(None, key=None, offset=8)))
    assert tasks.records == []
    assert [(key, t, d["stage"], d["topic"], d["partition"], d["offset"], d["payload"])
            for key, t, d in dead.records] == [
        (b"k", "DeadLetter", "code-decode", "t.code.changes", 2, 7, b"not avro"),
        (None, "DeadLetter", "code-decode", "t.code.changes", 2, 8, b"")]
    assert "DecodeError" in dead.records[0][2]["error"]


def test_a_code_change_becomes_its_tasks_keyed_by_task_id() -> None:
    dead, tasks = Sent(), Sent()
    asyncio.run(CodeChangeHandler(Guard(codec, dead), tasks, b"key")(_incoming(codec.encode("CodeChange", _change()))))
    assert dead.records == []
    assert [(key, t, r["task_id"], r["capability"]) for key, t, r in tasks.records] == [
        (b"doc-abcdef123456-pkg.a", "TaskRequested", "doc-abcdef123456-pkg.a", "documentation"),
        (b"review-abcdef123456", "TaskRequested", "review-abcdef123456", "review")]


def test_the_judge_passes_outputs_outside_experiments_and_dead_letters_what_is_not_an_output() -> None:
    dead, outcomes = Sent(), Sent()
    judge = OutputJudge(Guard(codec, dead), UNREACHABLE, outcomes)
    asyncio.run(judge(Incoming(codec.encode("AgentOutput", output("t1", "hi")), b"t1", "t.agent.outputs", 1, 5)))
    asyncio.run(judge(Incoming(codec.encode("PromptOutcome", outcome("t1")), b"t1", "t.agent.outputs", 1, 6)))
    assert outcomes.records == []
    assert [(d["stage"], d["offset"]) for _, _, d in dead.records] == [("judge-decode", 6)]
