"""A self-contained HTML report of a comparison: inline CSS and SVG plots, nothing fetched from a network."""

from __future__ import annotations

from html import escape

from agents.plots import Plot
from streams.replay.compare import Comparison, Interval, output_diff, prompt_summary

__all__ = ["render_html"]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}.sig{font-weight:bold}pre{background:#f6f6f6;padding:6px;
font-size:12px;overflow-x:auto}.add{color:#060}.del{color:#a00}svg{background:#fafafa;margin:4px}"""


def _scatter(c: Comparison, size: int = 300) -> str:
    """Score A (x) against score B (y), one dot per task, with the diagonal of no change."""
    plot = Plot(0.0, 1.0, 0.0, 1.0, width=size, height=size, left=48, bottom=40)
    plot.diagonal()
    for p in c.pairs:
        plot.point(p.a.score, p.b.score, "#36c" if p.same_output else "#c63", title=p.task_id)
    return plot.svg("score A", "score B", label="score A vs score B")


def _histogram(c: Comparison, width: int = 380, height: int = 220, bins: int = 20) -> str:
    """How the per-task score differences (B - A) are spread, on -1 .. +1 with a labelled zero."""
    counts = [0] * bins
    for p in c.pairs:
        counts[min(bins - 1, max(0, int((p.b.score - p.a.score + 1.0) / 2.0 * bins)))] += 1
    plot = Plot(-1.0, 1.0, 0.0, max(max(counts), 1), width=width, height=height, left=48, bottom=40, y_integer=True)
    for i, n in enumerate(counts):
        lo = -1.0 + 2.0 * i / bins
        if n:
            plot.bar(lo, lo + 2.0 / bins, n, "#69c", title=f"{n} task(s) in [{lo:+.1f}, {lo + 2.0 / bins:+.1f})")
    plot.zero_line("x", "0 = same score")
    return plot.svg("score B - A", "tasks", label="score differences")


def _interval_plot(i: Interval, width: int = 340, height: int = 64) -> str:
    """The mean difference and its interval on a ticked axis that includes a labelled zero."""
    plot = Plot(min(i.low, 0.0), max(i.high, 0.0), 0.0, 1.0, width=width, height=height, left=24, right=24,
                top=14, bottom=22, ticks=4)
    plot.yticks = []  # one row: no y axis
    plot.zero_line("x")
    plot.segment(i.low, i.high, 0.5, "#c63")
    plot.point(i.mean_diff, 0.5, "#333", r=5, opacity=1.0, title=f"{i.mean_diff:+.6g}")
    return plot.svg("", "", label=f"{i.metric} interval")


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
            f"<h2>Scores</h2><p>Each dot is a task: blue, the same output in both runs; orange, a different one. "
            f"Above the dashed diagonal B scored higher.</p>{_scatter(c)}{_histogram(c)}"
            f"<h2>Per task</h2><table><tr><th>task</th><th>score A</th><th>score B</th><th>cost A</th>"
            f"<th>cost B</th><th>latency A ms</th><th>latency B ms</th><th>prompt A / B</th><th>output</th></tr>"
            f"{tasks}</table>"
            f"</body></html>\n")
