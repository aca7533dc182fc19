"""What each event says in words: the text that is cached, embedded and searched."""

from __future__ import annotations

from typing import Any

__all__ = ["chunk_words", "event_text", "summary"]


def event_text(event_type: str, record: dict[str, Any]) -> str:
    """The searchable text of an event ("" for events that carry none, e.g. outcomes)."""
    if event_type in ("AgentOutput", "TaskResult"):
        return str(record.get("output") or "")
    if event_type == "CodeChange":
        files = ", ".join(record.get("files") or [])
        return f"{record.get('message', '')}\nfiles: {files}".strip()
    if event_type == "TaskRequested":
        return str(record.get("description") or "")
    if event_type == "ModuleDoc":  # the module's name and version lead, so a search for the module finds it
        return f"{record['module']} ({record['path']} at {record['sha'][:12]})\n{record['content']}"
    return ""


def summary(event_type: str, event_id: str, record: dict[str, Any], text: str) -> dict[str, Any]:
    """The small, JSON-able view of an event that L1 caches and retrieval returns."""
    return {"id": event_id, "type": event_type, "task_id": record.get("task_id") or record.get("sha") or "",
            "text": text, "created_at": int(record.get("created_at") or 0)}


def chunk_words(text: str, size: int = 160, overlap: int = 20) -> list[str]:
    """Split long text into overlapping word windows (the model reads at most 256 tokens)."""
    words = text.split()
    if len(words) <= size:
        return [" ".join(words)] if words else []
    step = max(1, size - overlap)
    return [" ".join(words[i:i + size]) for i in range(0, max(1, len(words) - overlap), step)]
