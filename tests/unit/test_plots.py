"""Plots a person can read: round ticks with labels, a labelled zero line, the decision point marked, tick
labels on every compare plot. Checked in the SVG, and laid out by headless chromium when it is installed."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agents.experiment_report import build_report, decision_point, render_html
from agents.experiment_scoring import score_outcome
from agents.plots import nice_ticks, tick_label
from agents.prompt_registry import Experiment
from streams.replay.compare import compare_runs
from streams.replay.html import render_html as compare_html
from streams.replay.store import Run, TaskRow

_ROUND = {1.0, 2.0, 2.5, 5.0}


def _is_round_step(step: float) -> bool:
    exponent = 10 ** math.floor(math.log10(step))
    return round(step / exponent, 6) in _ROUND | {10.0}


@pytest.mark.parametrize(("lo", "hi"), [(0, 8.11), (0, 0.0559), (-0.31, 0.42), (1, 300), (0.2, 0.8), (-1, 1),
                                        (3, 3), (-2e-5, 1.7e-5), (0.37, 12.9)])
def test_ticks_are_round_and_cover_the_range(lo: float, hi: float) -> None:
    ticks = nice_ticks(lo, hi)
    steps = {round(b - a, 12) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1 and _is_round_step(steps.pop())
    assert ticks[0] <= lo and ticks[-1] >= hi and 3 <= len(ticks) <= 9
    labels = [tick_label(t, ticks) for t in ticks]
    assert len(set(labels)) == len(labels) and "-0" not in labels
    assert all(len(label) <= 7 for label in labels), labels


def _experiment_html() -> tuple[str, float]:
    exp = Experiment("exp", "review", ["v1", "v2"], min_samples=50, alpha=0.05)
    rng = random.Random(1)
    state, history, decided = None, [], None
    for n in range(1, 301):
        variant = "v1" if n % 2 else "v2"
        step = score_outcome(state, exp, {"variant": variant,
                                          "success": rng.random() < (0.45 if variant == "v1" else 0.75)}, n)
        state = step.state
        history.append((n, step.point))
        if step.decision is not None and decided is None:
            decided = (n, step.decision)
    assert decided is not None
    n, decision = decided
    done = Experiment("exp", "review", ["v1", "v2"], min_samples=50, alpha=0.05, status="decided",
                      decision=decision.decision, winner=decision.winner, reason=decision.reason)
    report = build_report(done, state["arms"], history)
    assert decision_point(report) == n  # the mark is where the rule took the decision
    return render_html(report), n


def _compare_html() -> str:
    rng = random.Random(2)
    a = [TaskRow(f"t{i}", "d", "ok", f"out {i}", "m", rng.random(), 1e-4 * rng.random(), 100 * rng.random())
         for i in range(30)]
    b = [TaskRow(f"t{i}", "d", "ok", f"out {i}" if i % 3 else "other", "m", rng.random(), 1e-4 * rng.random(),
                 100 * rng.random()) for i in range(30)]
    return compare_html(compare_runs(Run("A", {}, a), Run("B", {}, b)))


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", page, flags=re.S)


def _labels(svg: str, css: str) -> list[str]:
    return re.findall(rf'<text class="{css}"[^>]*>([^<]*)</text>', svg)


def test_the_experiment_plots_have_round_labelled_ticks_a_zero_line_and_the_decision() -> None:
    page, n = _experiment_html()
    posterior, difference = _svgs(page)
    for svg in (posterior, difference):
        for axis in ("xtick", "ytick"):
            values = [float(v) for v in _labels(svg, axis)]
            assert len(values) >= 3 and _is_round_step(round(values[1] - values[0], 12)), (axis, values)
        assert _labels(svg, "xlabel") and _labels(svg, "ylabel")
    assert "8.11" not in page and "0.0559" not in page
    assert _labels(difference, "zero-label") == ["0 = no difference"] and 'class="zero"' in difference
    assert _labels(difference, "mark-label") == [f"promote v2 at {n}"]
    assert all(float(v) == int(float(v)) for v in _labels(difference, "xtick"))  # outcome counts are whole


def test_every_compare_plot_has_tick_labels_and_a_zero() -> None:
    page = _compare_html()
    svgs = _svgs(page)
    assert len(svgs) == 5  # three interval plots, the scatter, the histogram
    for svg in svgs:
        assert len(_labels(svg, "xtick")) >= 3, svg[:200]
    scatter, histogram = svgs[3], svgs[4]
    assert _labels(scatter, "ytick") and _labels(scatter, "xlabel") == ["score A"]
    assert _labels(histogram, "ytick")[0] == "0" and all(float(v) == int(float(v)) for v in _labels(histogram, "ytick"))
    for svg in (*svgs[:3], histogram):
        assert 'class="zero"' in svg and _labels(svg, "zero-label")
    assert "2e-05" in svgs[1] or "1e-05" in svgs[1]  # costs: short labels, not 0.000020
    assert "http" not in page and "<script" not in page  # inline SVG: nothing named or fetched from a network


_MEASURE = """<script>
const found = [];
for (const svg of document.querySelectorAll('svg')) {
  const box = svg.getBoundingClientRect();
  const problems = [];
  for (const t of svg.querySelectorAll('text.xtick, text.ytick, text.zero-label, text.mark-label')) {
    const b = t.getBoundingClientRect();
    if (b.width === 0 || b.left < box.left - 0.5 || b.right > box.right + 0.5 || b.top < box.top - 0.5
        || b.bottom > box.bottom + 0.5) problems.push('outside: ' + t.textContent);
  }
  for (const cls of ['xtick', 'ytick']) {
    const boxes = [...svg.querySelectorAll('text.' + cls)].map(t => t.getBoundingClientRect());
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i], b = boxes[j];
      if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) problems.push('overlap ' + cls);
    }
  }
  found.push({label: svg.getAttribute('aria-label'), width: box.width, problems: problems,
              ticks: svg.querySelectorAll('text.xtick').length + svg.querySelectorAll('text.ytick').length});
}
document.body.setAttribute('data-measured', JSON.stringify(found));
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe is not None
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="headless chromium not installed (apt-get install chromium)")
@pytest.mark.parametrize("which", ["experiment", "compare"])
def test_chromium_lays_the_plots_out_with_every_label_inside_and_none_overlapping(which: str,
                                                                                  tmp_path: Path) -> None:
    page = _experiment_html()[0] if which == "experiment" else _compare_html()
    shot = tmp_path / f"{which}.png"
    (tmp_path / f"{which}.html").write_text(page)
    done = _chromium("--window-size=1200,1400", f"--screenshot={shot}", (tmp_path / f"{which}.html").as_uri())
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", done.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a page with plots, not a blank one
    measured = tmp_path / f"{which}-measured.html"
    measured.write_text(page.replace("</body>", _MEASURE + "</body>"))
    dom = _chromium("--virtual-time-budget=2000", "--dump-dom", measured.as_uri()).stdout
    found = json.loads(re.search(r'data-measured="([^"]*)"', dom)[1].replace("&quot;", '"'))
    assert len(found) == (2 if which == "experiment" else 5)
    for svg in found:
        assert svg["width"] > 100 and svg["ticks"] >= 3 and svg["problems"] == [], svg
