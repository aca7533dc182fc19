"""A self-contained HTML report of a comparison: inline CSS and SVG plots, nothing fetched from a network."""

from __future__ import annotations

from html import escape

from streams.replay.compare import Comparison, Interval, output_diff, prompt_summary

__all__ = ["render_html"]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}.sig{font-weight:bold}pre{background:#f6f6f6;padding:6px;
font-size:12px;overflow-x:auto}.add{color:#060}.del{color:#a00}svg{background:#fafafa;margin:4px}"""


def _scatter(c: Comparison, size: int = 260) -> str:
    """Score A (x) against score B (y), one dot per task, with the diagonal of no change."""
    pad, top, span = 30, 10, size - 40
    dots = "".join(
        f'<circle cx="{pad + p.a.score * span:.1f}" cy="{top + (1 - p.b.score) * span:.1f}" r="3" '
        f'fill="{"#36c" if p.same_output else "#c63"}" fill-opacity="0.6"><title>{escape(p.task_id)}</title></circle>'
        for p in c.pairs)
    return (f'<svg width="{size}" height="{size}" role="img" aria-label="score A vs score B">'
            f'<line x1="{pad}" y1="{top + span}" x2="{pad + span}" y2="{top}" stroke="#999" stroke-dasharray="4"/>'
            f'{dots}'
            f'<text x="{size / 2}" y="{size - 2}" font-size="11" text-anchor="middle">score A</text>'
            f'<text x="10" y="{size / 2}" font-size="11" transform="rotate(-90 10 {size / 2})" '
            f'text-anchor="middle">score B</text></svg>')


def _histogram(c: Comparison, width: int = 360, height: int = 180, bins: int = 21) -> str:
    """How the per-task score differences (B - A) are spread."""
    diffs = [p.b.score - p.a.score for p in c.pairs]
    counts = [0] * bins
    for d in diffs:
        counts[min(bins - 1, max(0, int((d + 1.0) / 2.0 * bins)))] += 1
    top = max(counts) or 1
    bar = (width - 20) / bins
    bars = "".join(
        f'<rect x="{10 + i * bar:.1f}" y="{height - 25 - n / top * (height - 40):.1f}" width="{bar - 1:.1f}" '
        f'height="{n / top * (height - 40):.1f}" fill="#69c"><title>{n}</title></rect>' for i, n in enumerate(counts))
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="score differences">{bars}'
            f'<line x1="{width / 2}" y1="10" x2="{width / 2}" y2="{height - 25}" stroke="#999"/>'
            f'<text x="10" y="{height - 8}" font-size="11">-1</text>'
            f'<text x="{width / 2}" y="{height - 8}" font-size="11" text-anchor="middle">score B - A</text>'
            f'<text x="{width - 20}" y="{height - 8}" font-size="11">+1</text></svg>')


def _interval_plot(i: Interval, width: int = 320, height: int = 50) -> str:
    """The mean difference and its interval on an axis that includes zero."""
    lo, hi = min(i.low, 0.0), max(i.high, 0.0)
    span = (hi - lo) or 1.0
    lo, hi = lo - 0.1 * span, hi + 0.1 * span

    def x(v: float) -> float:
        return 10 + (v - lo) / (hi - lo) * (width - 20)

    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{i.metric} interval">'
            f'<line x1="{x(0):.1f}" y1="5" x2="{x(0):.1f}" y2="{height - 5}" stroke="#999" stroke-dasharray="3"/>'
            f'<line x1="{x(i.low):.1f}" y1="25" x2="{x(i.high):.1f}" y2="25" stroke="#c63" stroke-width="3"/>'
            f'<circle cx="{x(i.mean_diff):.1f}" cy="25" r="5" fill="#333"/></svg>')


def _diff_html(lines: list[str]) -> str:
    out = []
    for line in lines:
        css = "add" if line.startswith("+") else "del" if line.startswith("-") else ""
        out.append(f'<span class="{css}">{escape(line)}</span>')
    return "<pre>" + "\n".join(out) + "</pre>"


def render_html(c: Comparison) -> str:
    """The whole report as one HTML document."""
    aggregates = "".join(
        f'<tr class="{"sig" if i.significant else ""}"><td>{i.metric}</td><td>{i.n}</td><td>{i.mean_a:.6g}</td>'
        f"<td>{i.mean_b:.6g}</td><td>{i.mean_diff:+.6g}</td><td>[{i.low:+.6g}, {i.high:+.6g}]</td>"
        f"<td>{_interval_plot(i)}</td></tr>" for i in c.intervals)
    tasks = "".join(
        f"<tr><td>{escape(p.task_id)}</td><td>{p.a.score:.2f}</td><td>{p.b.score:.2f}</td>"
        f"<td>{p.a.cost_usd:.8f}</td><td>{p.b.cost_usd:.8f}</td><td>{p.a.latency_ms:.1f}</td>"
        f"<td>{p.b.latency_ms:.1f}</td><td>{escape(p.a.prompt or '-')} / {escape(p.b.prompt or '-')}</td><td>"
        + ("same" if p.same_output else
           f"<details><summary>differs</summary>{_diff_html(output_diff(p, c.name_a, c.name_b))}</details>")
        + "</td></tr>" for p in c.pairs)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>replay: {escape(c.name_a)} vs "
            f"{escape(c.name_b)}</title><style>{_CSS}</style></head><body>"
            f"<h1>Replay comparison</h1><p>A = <b>{escape(c.name_a)}</b><br>B = <b>{escape(c.name_b)}</b></p>"
            f"<p>{len(c.pairs)} tasks paired, {c.changed} with a different output; {len(c.only_a)} only (or not ok)"
            f" in A, {len(c.only_b)} only (or not ok) in B.</p><p>{escape(prompt_summary(c))}</p>"
            f"<h2>Aggregate differences (B - A)</h2><table><tr><th>metric</th><th>n</th><th>mean A</th>"
            f"<th>mean B</th><th>B - A</th><th>95% bootstrap interval</th><th></th></tr>{aggregates}</table>"
            f"<p>Bold: the interval excludes 0. Paired by task_id; bootstrap with a fixed seed.</p>"
            f"<h2>Scores</h2>{_scatter(c)}{_histogram(c)}"
            f"<h2>Per task</h2><table><tr><th>task</th><th>score A</th><th>score B</th><th>cost A</th>"
            f"<th>cost B</th><th>latency A ms</th><th>latency B ms</th><th>prompt A / B</th><th>output</th></tr>"
            f"{tasks}</table>"
            f"</body></html>\n")
