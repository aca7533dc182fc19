"""SVG plots a person can read, for the reports (experiment report, replay comparison): axes with round
ticks (steps of 1, 2 or 5 times a power of ten) and their labels, axis titles, a labelled zero line,
and marks such as a decision point. Inline SVG only: the pages load nothing and run no script.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

__all__ = ["Plot", "nice_ticks", "tick_label"]


def _step(span: float, count: int) -> float:
    raw = span / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * 0.999)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round ticks covering [lo, hi]: the first at or below lo, the last at or above hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"ticks need finite bounds, got {lo}, {hi}")
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _step(hi - lo, count)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def tick_label(value: float, ticks: list[float]) -> str:
    """`value` with as many decimals as the tick step needs (0.05 -> 2, 2.5 -> 1, 20 -> 0; below 0.001 in
    the short exponent form, 2e-05); never `-0`."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    if step < 1e-3:  # costs in dollars and the like: 2e-05, not 0.000020
        return "0" if abs(value) < step / 2 else f"{value:.2g}"
    decimals = next(d for d in range(7) if abs(round(step, d) - step) < 1e-9 * max(1.0, step) or d == 6)
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text


def _whole(ticks: list[float]) -> list[float]:
    """Ticks for counts: whole numbers only (a step below 1 becomes 1)."""
    if len(ticks) > 1 and ticks[1] - ticks[0] < 1:
        return [float(k) for k in range(math.floor(ticks[0]), math.ceil(ticks[-1]) + 1)]
    return ticks


class Plot:
    """A line/area/point plot on round-tick axes; `svg()` draws axes, grid, labels and the marks added."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float, *, width: int = 640, height: int = 300,
                 left: int = 64, right: int = 16, top: int = 16, bottom: int = 44, ticks: int = 5,
                 x_integer: bool = False, y_integer: bool = False) -> None:
        self.W, self.H, self.L, self.R, self.T, self.B = width, height, left, right, top, bottom
        self.xticks = _whole(nice_ticks(x0, x1, ticks)) if x_integer else nice_ticks(x0, x1, ticks)
        self.yticks = _whole(nice_ticks(y0, y1, ticks)) if y_integer else nice_ticks(y0, y1, ticks)
        self.x0, self.x1 = min(self.xticks[0], x0), max(self.xticks[-1], x1)
        self.y0, self.y1 = min(self.yticks[0], y0), max(self.yticks[-1], y1)
        self.parts: list[str] = []
        self.overlay: list[str] = []

    def px(self, x: float) -> float:
        return self.L + (x - self.x0) / (self.x1 - self.x0) * (self.W - self.L - self.R)

    def py(self, y: float) -> float:
        return self.H - self.B - (y - self.y0) / (self.y1 - self.y0) * (self.H - self.T - self.B)

    def _clip_y(self, y: float) -> float:
        return max(self.y0, min(self.y1, y))

    def line(self, pts: list[tuple[float, float]], colour: str, width: float = 2, dash: str = "") -> None:
        d = " ".join(f"{self.px(x):.1f},{self.py(self._clip_y(y)):.1f}" for x, y in pts)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="{width}"{extra} points="{d}"/>')

    def band(self, lower: list[tuple[float, float]], upper: list[tuple[float, float]], colour: str) -> None:
        pts = [*upper, *reversed(lower)]
        d = " ".join(f"{self.px(x):.1f},{self.py(self._clip_y(y)):.1f}" for x, y in pts)
        self.parts.append(f'<polygon fill="{colour}" fill-opacity="0.18" stroke="none" points="{d}"/>')

    def bar(self, x_lo: float, x_hi: float, y: float, colour: str, title: str = "") -> None:
        top, base = self.py(self._clip_y(y)), self.py(max(self.y0, 0.0))
        tip = f"<title>{html.escape(title)}</title>" if title else ""
        self.parts.append(f'<rect x="{self.px(x_lo) + 0.5:.1f}" y="{min(top, base):.1f}" '
                          f'width="{max(0.5, self.px(x_hi) - self.px(x_lo) - 1):.1f}" height="{abs(base - top):.1f}" '
                          f'fill="{colour}">{tip}</rect>')

    def point(self, x: float, y: float, colour: str, r: float = 3, title: str = "", opacity: float = 0.6) -> None:
        tip = f"<title>{html.escape(title)}</title>" if title else ""
        self.parts.append(f'<circle cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="{r}" fill="{colour}" '
                          f'fill-opacity="{opacity}">{tip}</circle>')

    def segment(self, x_lo: float, x_hi: float, y: float, colour: str, width: float = 3) -> None:
        self.parts.append(f'<line x1="{self.px(x_lo):.1f}" y1="{self.py(y):.1f}" x2="{self.px(x_hi):.1f}" '
                          f'y2="{self.py(y):.1f}" stroke="{colour}" stroke-width="{width}"/>')

    def zero_line(self, axis: str = "y", label: str = "0") -> None:
        """A dashed line at 0 on the y axis (horizontal) or the x axis (vertical), labelled."""
        text = html.escape(label)
        if axis == "y" and self.y0 <= 0 <= self.y1:
            y = self.py(0.0)
            self.overlay.append(f'<line class="zero" x1="{self.L}" y1="{y:.1f}" x2="{self.W - self.R}" y2="{y:.1f}" '
                                f'stroke="#444" stroke-width="1.2" stroke-dasharray="5 3"/>'
                                f'<text class="zero-label" x="{self.W - self.R - 4}" y="{y - 4:.1f}" '
                                f'text-anchor="end" fill="#444">{text}</text>')
        elif axis == "x" and self.x0 <= 0 <= self.x1:
            x = self.px(0.0)
            self.overlay.append(f'<line class="zero" x1="{x:.1f}" y1="{self.T}" x2="{x:.1f}" y2="{self.H - self.B}" '
                                f'stroke="#444" stroke-width="1.2" stroke-dasharray="5 3"/>'
                                f'<text class="zero-label" x="{x + 4:.1f}" y="{self.T + 10}" fill="#444">{text}</text>')

    def diagonal(self, colour: str = "#999") -> None:
        lo, hi = max(self.x0, self.y0), min(self.x1, self.y1)
        self.parts.append(f'<line x1="{self.px(lo):.1f}" y1="{self.py(lo):.1f}" x2="{self.px(hi):.1f}" '
                          f'y2="{self.py(hi):.1f}" stroke="{colour}" stroke-dasharray="4"/>')

    def vmark(self, x: float, label: str, colour: str = "#111") -> None:
        """A vertical line at `x` with a label at its top (e.g. where a decision was taken)."""
        px = self.px(x)
        anchor = "end" if px > (self.L + self.W) / 2 else "start"
        dx = -4 if anchor == "end" else 4
        self.overlay.append(f'<line class="mark" x1="{px:.1f}" y1="{self.T}" x2="{px:.1f}" y2="{self.H - self.B}" '
                            f'stroke="{colour}" stroke-width="1.5"/>'
                            f'<text class="mark-label" x="{px + dx:.1f}" y="{self.T + 24}" text-anchor="{anchor}" '
                            f'fill="{colour}" font-weight="bold">{html.escape(label)}</text>')

    def svg(self, xlabel: str, ylabel: str, legend: Sequence[tuple[str, str]] = (), label: str = "") -> str:
        bottom, left = self.H - self.B, self.L
        grid: list[str] = []
        axes = [f'<line x1="{left}" y1="{bottom}" x2="{self.W - self.R}" y2="{bottom}" stroke="#333"/>']
        if self.yticks:
            axes.append(f'<line x1="{left}" y1="{self.T}" x2="{left}" y2="{bottom}" stroke="#333"/>')
        for t in self.xticks:
            x = self.px(t)
            grid.append(f'<line x1="{x:.1f}" y1="{self.T}" x2="{x:.1f}" y2="{bottom}" stroke="#e4e4e4"/>')
            axes.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#333"/>'
                        f'<text class="xtick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">'
                        f'{tick_label(t, self.xticks)}</text>')
        for t in self.yticks:
            y = self.py(t)
            grid.append(f'<line x1="{left}" y1="{y:.1f}" x2="{self.W - self.R}" y2="{y:.1f}" stroke="#e4e4e4"/>')
            axes.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="#333"/>'
                        f'<text class="ytick" x="{left - 7}" y="{y + 4:.1f}" text-anchor="end">'
                        f'{tick_label(t, self.yticks)}</text>')
        axes.append(f'<text class="xlabel" x="{(left + self.W - self.R) / 2}" y="{self.H - 8}" '
                    f'text-anchor="middle">{html.escape(xlabel)}</text>')
        mid = (self.T + bottom) / 2
        axes.append(f'<text class="ylabel" x="14" y="{mid}" transform="rotate(-90 14 {mid})" '
                    f'text-anchor="middle">{html.escape(ylabel)}</text>')
        keys = []
        for i, (name, colour) in enumerate(legend):
            y = self.T + 6 + 16 * i
            keys.append(f'<rect x="{self.W - 170}" y="{y}" width="12" height="4" fill="{colour}"/>'
                        f'<text x="{self.W - 152}" y="{y + 6}">{html.escape(name)}</text>')
        aria = f' role="img" aria-label="{html.escape(label)}"' if label else ""
        return (f'<svg viewBox="0 0 {self.W} {self.H}" width="{self.W}" '
                f'height="{self.H}" font-family="sans-serif" font-size="11"{aria}>'
                f'{"".join(grid + self.parts + self.overlay + axes + keys)}</svg>')
