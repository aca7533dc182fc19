"""Spans kept on local disk: one JSON-lines file per process under `<data folder>/traces/`, so
`agentstream trace TASK_ID` and the dashboard show a task's trace without any tracing server.

The exporter runs in the SDK's batch thread. A file that reaches its size limit becomes `<name>.1`
(replacing the previous one) and a new file starts: each process keeps at most twice the limit.
Finished processes' files stay until they are rotated away by name reuse or removed by hand.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["JsonLinesExporter", "StoredSpan", "trace_files", "traces_dir", "traces_of_task"]

TASK_ATTRIBUTE = "agentstream.task_id"


def traces_dir(data_dir: Path) -> Path:
    return data_dir / "traces"


@dataclass(frozen=True)
class StoredSpan:
    """One span as kept on disk (times in ns since the epoch)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    service: str
    status: str = "UNSET"
    error: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StoredSpan:
        return cls(row["trace_id"], row["span_id"], row.get("parent_id"), row["name"], row.get("kind", ""),
                   int(row["start"]), int(row["end"]), row.get("service", ""), row.get("status", "UNSET"),
                   row.get("error", ""), row.get("attributes") or {})

    def as_dict(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "span_id": self.span_id, "parent_id": self.parent_id, "name": self.name,
                "kind": self.kind, "start_ns": self.start_ns, "end_ns": self.end_ns, "service": self.service,
                "status": self.status, "error": self.error, "attributes": self.attributes}


def _row(span: ReadableSpan, service: str) -> str:
    ctx = span.get_span_context()
    parent = span.parent
    status = span.status
    row = {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}",
           "parent_id": f"{parent.span_id:016x}" if parent is not None else None, "name": span.name,
           "kind": span.kind.name, "start": span.start_time, "end": span.end_time, "service": service,
           "status": status.status_code.name, "error": status.description or "",
           "attributes": dict(span.attributes or {})}
    return json.dumps(row, separators=(",", ":"), default=str)


class JsonLinesExporter(SpanExporter):
    """Appends each span as a JSON line to `path`, rotated at `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path, self.max_bytes = path, max_bytes
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        service = str(spans[0].resource.attributes.get("service.name", ""))
        text = "".join(_row(span, service) + "\n" for span in spans)
        try:
            with self._lock:
                out = self._open()
                out.write(text)
                out.flush()
                if out.tell() >= self.max_bytes:
                    out.close()
                    self._file = None
                    self.path.replace(self.path.with_name(self.path.name + ".1"))
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        return self._file

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def trace_files(data_dir: Path) -> list[Path]:
    """Every local span file, the rotated ones included."""
    folder = traces_dir(data_dir)
    return sorted([*folder.glob("*.jsonl"), *folder.glob("*.jsonl.1")]) if folder.is_dir() else []


def _lines_with(files: list[Path], needles: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The JSON rows of the lines that contain one of `needles` (a plain text test before parsing)."""
    for path in files:
        try:
            with path.open(encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    if any(n in line for n in needles):
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError:
                            continue  # a line cut by a crash
        except OSError:
            continue


def traces_of_task(data_dir: Path, task_id: str) -> dict[str, list[StoredSpan]]:
    """Every locally kept trace that has a span of `task_id`: trace id -> its spans (all processes)."""
    files = trace_files(data_dir)
    needle = json.dumps({TASK_ATTRIBUTE: task_id}, separators=(",", ":"))[1:-1]
    trace_ids = {row["trace_id"] for row in _lines_with(files, [needle])
                 if (row.get("attributes") or {}).get(TASK_ATTRIBUTE) == task_id}
    if not trace_ids:
        return {}
    found: dict[str, dict[str, StoredSpan]] = {t: {} for t in trace_ids}
    for row in _lines_with(files, [f'"trace_id":"{t}"' for t in trace_ids]):
        if row.get("trace_id") in found:
            span = StoredSpan.from_row(row)
            found[span.trace_id][span.span_id] = span  # a span written twice (rotation) counts once
    return {t: sorted(spans.values(), key=lambda s: s.start_ns) for t, spans in found.items()}
