"""Compare two runs task by task: output diff, score, cost, latency, and paired aggregate differences.

The aggregate is the mean of the paired differences (B - A) over the tasks both runs answered, with a
95% percentile bootstrap interval drawn with a fixed seed, so the same two runs always give the same
report.
"""

from __future__ import annotations

import difflib
import random
import statistics
from collections import Counter
from dataclasses import dataclass

from streams.replay.store import Run, TaskRow

__all__ = ["METRICS", "Comparison", "Interval", "Pair", "compare_runs", "output_diff", "paired_interval",
           "prompt_summary", "render_text"]

METRICS = ("score", "cost_usd", "latency_ms")


@dataclass(frozen=True)
class Interval:
    """Mean paired difference (B - A) with its 95% bootstrap interval."""

    metric: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.n > 1 and (self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class Pair:
    """One task in both runs."""

    task_id: str
    a: TaskRow
    b: TaskRow

    @property
    def same_output(self) -> bool:
        return self.a.output == self.b.output


@dataclass(frozen=True)
class Comparison:
    name_a: str
    name_b: str
    pairs: list[Pair]
    only_a: list[str]
    only_b: list[str]
    intervals: list[Interval]

    @property
    def changed(self) -> int:
        return sum(1 for p in self.pairs if not p.same_output)


def paired_interval(metric: str, a: list[float], b: list[float], *, resamples: int = 2000,
                    seed: int = 0) -> Interval:
    """Mean of b - a and a 95% percentile bootstrap interval (fixed seed: reproducible)."""
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    if n == 0:
        return Interval(metric, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    mean = statistics.fmean(diffs)
    rng = random.Random(seed)  # not for security: a reproducible resampling
    means = sorted(statistics.fmean(rng.choices(diffs, k=n)) for _ in range(resamples))
    low, high = means[int(0.025 * (resamples - 1))], means[int(0.975 * (resamples - 1))]
    return Interval(metric, n, statistics.fmean(a), statistics.fmean(b), mean, low, high)


def compare_runs(a: Run, b: Run) -> Comparison:
    """Pair the tasks both runs answered (by task_id); failed or missing answers are not paired."""
    rows_b = {r.task_id: r for r in b.rows}
    ids_a = {r.task_id for r in a.rows}
    pairs = [Pair(r.task_id, r, rows_b[r.task_id]) for r in a.rows
             if r.task_id in rows_b and r.status == "ok" and rows_b[r.task_id].status == "ok"]
    intervals = [paired_interval(m, [getattr(p.a, m) for p in pairs], [getattr(p.b, m) for p in pairs])
                 for m in METRICS]
    return Comparison(a.name, b.name, pairs,
                      only_a=sorted(ids_a - {p.task_id for p in pairs}),
                      only_b=sorted(set(rows_b) - {p.task_id for p in pairs}),
                      intervals=intervals)


def prompt_summary(c: Comparison) -> str:
    """Which registry prompt versions answered the paired tasks in each run ("" when none did)."""
    def counted(rows: list[TaskRow]) -> str:
        found = Counter(r.prompt for r in rows if r.prompt)
        return ", ".join(f"{p} x{n}" for p, n in sorted(found.items())) or "built-in prompts"

    if not any(p.a.prompt or p.b.prompt for p in c.pairs):
        return ""
    return f"prompt versions: A {counted([p.a for p in c.pairs])}; B {counted([p.b for p in c.pairs])}"


def output_diff(pair: Pair, name_a: str = "A", name_b: str = "B") -> list[str]:
    """A unified diff of the two outputs (empty when they are the same)."""
    return list(difflib.unified_diff(pair.a.output.splitlines(), pair.b.output.splitlines(),
                                     fromfile=name_a, tofile=name_b, lineterm=""))


def _fmt(metric: str, value: float) -> str:
    return f"{value:+.8f}" if metric == "cost_usd" else f"{value:+.3f}" if metric == "score" else f"{value:+.1f}"


def render_text(c: Comparison, *, rows: int = 20, diffs: int = 2) -> list[str]:
    """The comparison as lines for a terminal."""
    lines = [f"A = {c.name_a}", f"B = {c.name_b}",
             f"{len(c.pairs)} tasks paired, {c.changed} with a different output; "
             f"{len(c.only_a)} only (or not ok) in A, {len(c.only_b)} only (or not ok) in B",
             *([prompts] if (prompts := prompt_summary(c)) else []), "",
             f"{'task':<28} {'score A':>7} {'score B':>7} {'cost A':>11} {'cost B':>11} "
             f"{'lat A ms':>9} {'lat B ms':>9}  output"]
    for p in c.pairs[:rows]:
        lines.append(f"{p.task_id[-28:]:<28} {p.a.score:>7.2f} {p.b.score:>7.2f} {p.a.cost_usd:>11.8f} "
                     f"{p.b.cost_usd:>11.8f} {p.a.latency_ms:>9.1f} {p.b.latency_ms:>9.1f}  "
                     f"{'same' if p.same_output else 'differs'}")
    if len(c.pairs) > rows:
        lines.append(f"... {len(c.pairs) - rows} more (--rows N, or --html FILE for all)")
    lines += ["", f"{'metric':<11} {'n':>4} {'mean A':>12} {'mean B':>12} {'B - A':>12}  95% interval (bootstrap)"]
    for i in c.intervals:
        mark = "  *" if i.significant else ""
        lines.append(f"{i.metric:<11} {i.n:>4} {i.mean_a:>12.6g} {i.mean_b:>12.6g} {_fmt(i.metric, i.mean_diff):>12}"
                     f"  [{_fmt(i.metric, i.low)}, {_fmt(i.metric, i.high)}]{mark}")
    lines.append("(* the interval excludes 0)")
    for p in [p for p in c.pairs if not p.same_output][:diffs]:
        lines += ["", f"--- output diff for {p.task_id}", *output_diff(p, c.name_a, c.name_b)]
    return lines
