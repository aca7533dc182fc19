"""A trace as a waterfall: its spans in tree order, each with its start offset, duration, process and
what it did (model, tokens, cost), as text for `agentstream trace` and as rows for the dashboard."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from streams.observability.spanstore import StoredSpan

__all__ = ["Row", "render_text", "rows"]


@dataclass(frozen=True)
class Row:
    """One line of the waterfall."""

    depth: int
    name: str
    process: str
    offset_ms: float
    duration_ms: float
    details: str
    error: bool

    def as_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "name": self.name, "process": self.process, "offset_ms": round(self.offset_ms, 3),
                "duration_ms": round(self.duration_ms, 3), "details": self.details, "error": self.error}


def _details(span: StoredSpan) -> str:
    a = span.attributes
    parts = []
    model = a.get("gen_ai.response.model") or a.get("gen_ai.request.model")
    if model and not span.name.endswith(str(model)):
        parts.append(f"model={model}")
    if "gen_ai.usage.input_tokens" in a:
        parts.append(f"tokens={a['gen_ai.usage.input_tokens']}/{a.get('gen_ai.usage.output_tokens', 0)}")
    if "agentstream.cost_usd" in a:
        parts.append(f"cost=${float(a['agentstream.cost_usd']):.7f}")
    for key, label in (("agentstream.status", "status"), ("agentstream.tenant", "tenant"),
                       ("agentstream.memory.tier", "tier"), ("agentstream.sink.result", "sink"),
                       ("error.type", "error")):
        if key in a:
            parts.append(f"{label}={a[key]}")
    if "messaging.kafka.offset" in a:
        parts.append(f"p{a.get('messaging.destination.partition.id', '?')}@{a['messaging.kafka.offset']}")
    if span.status == "ERROR" and span.error:
        parts.append(f"({span.error[:80]})")
    return " ".join(parts)


def rows(spans: list[StoredSpan]) -> list[Row]:
    """The spans of one trace, parents before their children, siblings by start time."""
    if not spans:
        return []
    known = {s.span_id for s in spans}
    children: dict[str | None, list[StoredSpan]] = defaultdict(list)
    for s in spans:
        children[s.parent_id if s.parent_id in known else None].append(s)
    t0 = min(s.start_ns for s in spans)
    out: list[Row] = []
    stack = [(0, s) for s in sorted(children[None], key=lambda s: s.start_ns, reverse=True)]
    while stack:
        depth, span = stack.pop()
        process = span.service.removeprefix("agentstream-")
        out.append(Row(depth, span.name, process, (span.start_ns - t0) / 1e6, span.duration_ms, _details(span),
                       span.status == "ERROR"))
        stack += [(depth + 1, c) for c in sorted(children[span.span_id], key=lambda s: s.start_ns, reverse=True)]
    return out


def render_text(trace_id: str, spans: list[StoredSpan], width: int = 30) -> str:
    """The waterfall as text: offset and duration (ms), a bar on the trace's time line, the span, its process."""
    lines = rows(spans)
    if not lines:
        return f"trace {trace_id}: no spans"
    total = max(r.offset_ms + r.duration_ms for r in lines) or 1.0
    processes = sorted({r.process for r in lines})
    out = [f"trace {trace_id}: {len(lines)} spans, {total:,.1f} ms, processes: {', '.join(processes)}",
           f"{'start ms':>10} {'took ms':>9}  {'':<{width}}  span"]
    for r in lines:
        begin = min(width - 1, int(r.offset_ms / total * width))
        length = max(1, min(width - begin, round(r.duration_ms / total * width)))
        bar = " " * begin + ("!" if r.error else "#") * length
        out.append(f"{r.offset_ms:>10,.1f} {r.duration_ms:>9,.1f}  {bar:<{width}}  {'  ' * r.depth}{r.name} "
                   f"[{r.process}] {r.details}".rstrip())
    return "\n".join(out)
