"""The experiment report: a table for the terminal and a self-contained HTML page with SVG plots.

The page has no script and loads nothing from the network: the plots are inline SVG (the Beta
posterior of each variant, and each challenger's running difference from the control with its
always-valid interval, over the outcomes counted).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

from agents.experiment_stats import ArmStats, Decision, beta_interval, decide, prob_best
from agents.plots import Plot
from agents.prompt_registry import Experiment

__all__ = ["Report", "build_report", "decision_point", "render_html", "render_text"]

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass(frozen=True)
class Report:
    """Everything the report shows, computed once."""

    experiment: Experiment
    arms: list[tuple[str, ArmStats]]
    intervals: dict[str, tuple[float, float]]
    best: dict[str, float]
    current: Decision
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)


def build_report(exp: Experiment, arm_stats: dict[str, dict[str, Any]],
                 history: list[tuple[int, dict[str, float]]]) -> Report:
    arms = [(v, ArmStats.from_dict(arm_stats.get(v) or {})) for v in exp.variants]
    intervals = {v: beta_interval(a.successes, a.n) for v, a in arms}
    return Report(exp, arms, intervals, prob_best(arms), decide(arms, exp.alpha, exp.min_samples), history)


def render_text(r: Report) -> str:
    e = r.experiment
    lines = [f"experiment {e.name}  prompt {e.prompt}  mode {e.mode}  metric {e.metric}  alpha {e.alpha:g}  "
             f"status {e.status}",
             f"{'variant':<8} {'n':>7} {'successes':>9} {'rate':>7} {'95% interval':>17} {'quality':>8} "
             f"{'ema':>6} {'P(best)':>8}"]
    for v, a in r.arms:
        lo, hi = r.intervals[v]
        ema = f"{a.ema_success:.3f}" if a.ema_success is not None else "-"
        lines.append(f"{v:<8} {a.n:>7} {a.successes:>9} {a.rate:>7.3f} {f'[{lo:.3f}, {hi:.3f}]':>17} "
                     f"{a.mean_quality:>8.3f} {ema:>6} {r.best[v]:>8.3f}")
    for v, _ in r.arms[1:]:
        if f"{v}.diff" in r.current.stats:
            s = r.current.stats
            lines.append(f"{v} - {r.arms[0][0]}: {s[f'{v}.diff']:+.4f}, always-valid interval "
                         f"[{s[f'{v}.lower']:+.4f}, {s[f'{v}.upper']:+.4f}]")
    if e.decision:
        when = f" at {e.decided_at:%Y-%m-%d %H:%M:%S}" if e.decided_at else ""
        lines.append(f"decision: {e.decision} {e.winner or ''}{when}: {e.reason}")
    else:
        lines.append(f"decision: none yet ({r.current.reason})")
    return "\n".join(lines)


def _beta_pdf(x: float, a: float, b: float) -> float:
    if x <= 0.0 or x >= 1.0:
        return 0.0
    return math.exp((a - 1) * math.log(x) + (b - 1) * math.log(1 - x)
                    + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))


def _posterior_svg(r: Report) -> str:
    params = [(v, 1.0 + a.total, 1.0 + a.n - a.total) for v, a in r.arms]
    lo = max(0.0, min(a / (a + b) - 5 * math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))) for _, a, b in params))
    hi = min(1.0, max(a / (a + b) + 5 * math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))) for _, a, b in params))
    xs = [lo + (hi - lo) * i / 200 for i in range(201)]
    curves = [(v, [(x, _beta_pdf(x, a, b)) for x in xs]) for v, a, b in params]
    plot = Plot(lo, hi, 0.0, max(y for _, c in curves for _, y in c) * 1.05)
    for i, (_, c) in enumerate(curves):
        plot.line(c, _COLOURS[i % len(_COLOURS)])
    return plot.svg(f"true {r.experiment.metric} rate", "posterior density",
                    [(v, _COLOURS[i % len(_COLOURS)]) for i, (v, _) in enumerate(curves)], label="posteriors")


def _difference_svg(r: Report) -> str:
    challengers = [v for v, _ in r.arms[1:]]
    series = {v: [(float(seq), p) for seq, p in r.history if f"{v}.diff" in p] for v in challengers}
    points = [p for s in series.values() for p in s]
    if not points:
        return "<p>No interval yet: each variant needs its minimum number of outcomes first.</p>"
    ys = [y for _, p in points for y in (p[f"{v}.lower"] for v in challengers if f"{v}.lower" in p)] + \
         [y for _, p in points for y in (p[f"{v}.upper"] for v in challengers if f"{v}.upper" in p)]
    y0, y1 = max(-0.5, min(ys)), min(0.5, max(ys))
    y0, y1 = min(y0, 0.0), max(y1, 0.0)
    plot = Plot(min(x for x, _ in points), max(x for x, _ in points), y0, y1, x_integer=True)
    plot.zero_line("y", "0 = no difference")
    for i, v in enumerate(challengers):
        colour = _COLOURS[(i + 1) % len(_COLOURS)]
        s = series[v]
        plot.band([(x, p[f"{v}.lower"]) for x, p in s], [(x, p[f"{v}.upper"]) for x, p in s], colour)
        plot.line([(x, p[f"{v}.diff"]) for x, p in s], colour)
    decided = decision_point(r)
    if decided is not None:
        e = r.experiment
        plot.vmark(decided, f"{e.decision} {e.winner or ''} at {decided:g}".replace("  ", " "))
    return plot.svg("outcomes counted (all variants)", f"difference from {r.arms[0][0]}",
                    [(f"{v} - {r.arms[0][0]}", _COLOURS[(i + 1) % len(_COLOURS)]) for i, v in enumerate(challengers)],
                    label="running difference")


def decision_point(r: Report) -> float | None:
    """The outcome count at which the experiment's decision was taken: the first history point where
    every variant had its minimum of outcomes and the rule held (the winner's band wholly above 0 for a
    promotion; every challenger's band below 0 for a stop). None while undecided."""
    e = r.experiment
    if not e.decision:
        return None
    challengers = [v for v, _ in r.arms[1:]]
    for seq, p in r.history:
        if min(p.get(f"{v}.n", 0.0) for v, _ in r.arms) < max(2, e.min_samples):
            continue
        if e.decision == "promote" and e.winner and p.get(f"{e.winner}.lower", -1.0) > 0:
            return float(seq)
        if e.decision == "stop" and all(p.get(f"{v}.upper", 1.0) < 0 for v in challengers):
            return float(seq)
    return None


def render_html(r: Report) -> str:
    """A self-contained page: inline CSS and SVG, no script, no external resource."""
    e = r.experiment
    table = render_text(r)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>experiment {html.escape(e.name)}</title>
<style>body{{font-family:sans-serif;max-width:760px;margin:2em auto;color:#222}}
pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}</style></head>
<body><h1>Experiment {html.escape(e.name)}</h1>
<pre>{html.escape(table)}</pre>
<h2>Posteriors</h2><p>Beta(1 + successes, 1 + failures) for each variant.</p>
{_posterior_svg(r)}
<h2>Running difference with its always-valid interval</h2>
<p>Normal-mixture SPRT confidence sequence at alpha {e.alpha:g} (Bonferroni across challengers): it may be
read after every outcome; the challenger is promoted when the band lies wholly above the dashed 0 line. The
vertical line marks the outcome at which the decision was taken.</p>
{_difference_svg(r)}
</body></html>
"""
