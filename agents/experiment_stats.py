"""Statistics for prompt experiments that stay correct when checked after every outcome.

Which test
    A normal-mixture sequential probability ratio test (mSPRT; Robbins 1970, Johari, Pekelis and
    Walsh, "Always valid inference", 2017/2022) on the difference of means between each challenger
    variant and the control (the first variant). For success metrics the mean is the success rate;
    for quality metrics it is the mean quality in [0, 1]. With the plug-in variance
    ``V = s2_a / n_a + s2_b / n_b`` of the difference ``d = mean_b - mean_a`` and a normal mixing
    distribution ``theta ~ N(0, tau^2)`` over the true lift, the mixture likelihood ratio is::

        Lambda = sqrt(V / (V + tau^2)) * exp(d^2 * tau^2 / (2 V (V + tau^2)))

    and the always-valid (1 - alpha) confidence sequence for the true difference is::

        d +/- sqrt(V (V + tau^2) / tau^2 * (2 log(1 / alpha) + log((V + tau^2) / V)))

Why this test
    A fixed-horizon z-test checked after every outcome promotes a variant that is no better far
    more often than alpha (the "peeking" problem: with continuous monitoring its false positive
    rate tends to 1). The mixture likelihood ratio is a non-negative martingale under the null, so
    by Ville's inequality ``P(sup_n Lambda_n >= 1/alpha) <= alpha``: the test may be checked after
    every single outcome, forever, and the error stays below alpha. It needs no horizon, gives an
    interval that users can read (the running difference with its always-valid interval), and
    costs O(1) per outcome from running sums, which is what a stream processor can afford.
    ``tau`` is the scale of lifts we expect; the default (0.05) was chosen by simulation to detect
    5- and 10-point lifts quickly (see tests/unit/prompts/test_experiment_simulation.py).

The error guarantee
    Under H0 (no difference) the probability that the decision rule EVER promotes a challenger,
    however long the experiment runs and however often it is checked, is at most alpha (at most
    alpha / (k - 1) per challenger with k variants: Bonferroni across challengers). The guarantee is
    asymptotic in the sense of Johari et al. (the variance is estimated, the outcomes are treated as
    i.i.d.); a minimum sample size per arm (``min_samples``) keeps the plug-in variance sane at the
    start. In simulation (tests/unit/prompts/test_experiment_simulation.py: `decide` after every
    outcome, 200 A/A experiments of 1,000 outcomes per arm) the false promotion rate is about 1 %,
    below alpha = 5 %. With bandit allocation (Thompson sampling) outcomes are not i.i.d. across
    arms; the test then remains a sound heuristic, not a proven bound; use split mode when the error
    rate matters. Bandit allocation also starves the worse arm below ``min_samples``, so a bandit
    experiment with a clear winner seldom reaches a decision (the simulation shows it).

Decisions
    ``promote`` a challenger when its interval lies wholly above 0 (it beats the control);
    ``stop`` (keep the control) when every challenger's interval lies wholly below ``min_effect``
    (no challenger can be better by the smallest lift worth having: futility) or wholly below 0;
    otherwise ``continue``. Both stopping rules read the same confidence sequence, so both hold
    their error rates under continuous peeking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "ArmStats",
    "Decision",
    "beta_interval",
    "decide",
    "msprt",
    "prob_best",
    "variance",
]

DEFAULT_TAU = 0.05
_EPS_VAR = 1e-9


@dataclass
class ArmStats:
    """Running sufficient statistics of one variant: outcome count, sums, and moving averages.

    ``total`` is the sum of the metric (successes, or summed quality), ``total_sq`` the sum of its
    squares (equal to ``total`` for 0/1 outcomes). ``successes`` and ``quality_sum`` are kept for
    reporting whatever the metric.
    """

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    successes: int = 0
    quality_sum: float = 0.0
    ema_success: float | None = None
    ema_quality: float | None = None

    def add(self, success: bool, quality: float, metric: str = "success", ema_alpha: float = 0.05) -> None:
        """Count one outcome."""
        x = float(success) if metric == "success" else float(quality)
        self.n += 1
        self.total += x
        self.total_sq += x * x
        self.successes += int(success)
        self.quality_sum += quality
        s = float(success)
        self.ema_success = s if self.ema_success is None else self.ema_success + ema_alpha * (s - self.ema_success)
        q = float(quality)
        self.ema_quality = q if self.ema_quality is None else self.ema_quality + ema_alpha * (q - self.ema_quality)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def rate(self) -> float:
        return self.successes / self.n if self.n else 0.0

    @property
    def mean_quality(self) -> float:
        return self.quality_sum / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        return variance(self.n, self.total, self.total_sq)

    def to_dict(self) -> dict[str, float | int | None]:
        return {k: getattr(self, k) for k in ("n", "total", "total_sq", "successes", "quality_sum",
                                              "ema_success", "ema_quality")}

    @classmethod
    def from_dict(cls, data: dict) -> ArmStats:
        return cls(**{k: data[k] for k in ("n", "total", "total_sq", "successes", "quality_sum",
                                           "ema_success", "ema_quality") if k in data})


def variance(n: int, total: float, total_sq: float) -> float:
    """Plug-in variance of one outcome, shrunk by one pseudo-observation of variance 1/4 (the
    Bernoulli maximum) so a run of identical outcomes cannot give zero."""
    if n <= 0:
        return 0.25
    m = total / n
    return max((total_sq - n * m * m + 0.25) / (n + 1), _EPS_VAR)


def msprt(mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int,
          alpha: float, tau: float = DEFAULT_TAU) -> tuple[float, float, float, float]:
    """(difference b - a, lower, upper, log mixture likelihood ratio) of the normal-mixture SPRT."""
    d = mean_b - mean_a
    v = var_a / n_a + var_b / n_b
    t2 = tau * tau
    vt = v + t2
    log_lr = 0.5 * math.log(v / vt) + d * d * t2 / (2.0 * v * vt)
    half = math.sqrt(v * vt / t2 * (2.0 * math.log(1.0 / alpha) + math.log(vt / v)))
    return d, d - half, d + half, log_lr


@dataclass(frozen=True)
class Decision:
    """What the rule says now: promote (winner set), stop (keep control), or continue."""

    decision: str
    winner: str | None
    reason: str
    stats: dict[str, float] = field(default_factory=dict)


def decide(arms: Sequence[tuple[str, ArmStats]], alpha: float = 0.05, min_samples: int = 100,
           tau: float = DEFAULT_TAU, min_effect: float = 0.0) -> Decision:
    """Apply the rule to the arms (the first is the control); call it after every outcome.

    Challengers are each compared with the control at alpha / (k - 1). Among those whose interval
    is above 0 the one with the highest lower bound is promoted.
    """
    if len(arms) < 2:
        return Decision("continue", None, "fewer than two variants")
    (control_name, control), challengers = arms[0], arms[1:]
    if min(a.n for _, a in arms) < max(2, min_samples):
        return Decision("continue", None, f"waiting for {min_samples} outcomes per variant")
    level = alpha / len(challengers)
    stats: dict[str, float] = {"alpha": alpha}
    best: tuple[float, str] | None = None
    futile = 0
    for name, arm in challengers:
        d, lo, hi, log_lr = msprt(control.mean, control.variance, control.n, arm.mean, arm.variance, arm.n,
                                  level, tau)
        stats.update({f"{name}.diff": d, f"{name}.lower": lo, f"{name}.upper": hi, f"{name}.log_lr": log_lr})
        if lo > 0 and (best is None or lo > best[0]):
            best = (lo, name)
        if hi < max(min_effect, 0.0) or (min_effect <= 0 and hi < 0):
            futile += 1
    for name, arm in arms:
        stats[f"{name}.n"] = float(arm.n)
        stats[f"{name}.mean"] = arm.mean
    if best is not None:
        return Decision("promote", best[1], f"{best[1]} beats {control_name}: always-valid lower bound "
                        f"{best[0]:+.4f} > 0 at alpha {level:.4g}", stats)
    if futile == len(challengers):
        return Decision("stop", control_name, f"no variant beats {control_name} by {min_effect:g} or more "
                        f"(every always-valid upper bound below it)", stats)
    return Decision("continue", None, "no interval excludes the null yet", stats)


def beta_interval(successes: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Equal-tailed credible interval of a Beta(1 + s, 1 + n - s) posterior (normal approximation
    with the Wilson-style centre; exact enough for reporting, no scipy needed)."""
    a, b = 1.0 + successes, 1.0 + n - successes
    mean = a / (a + b)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
    z = _z(0.5 + level / 2.0)
    return max(0.0, mean - z * sd), min(1.0, mean + z * sd)


def _z(p: float) -> float:
    """Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_z(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def prob_best(arms: Sequence[tuple[str, ArmStats]], draws: int = 4000, seed: int = 0) -> dict[str, float]:
    """Monte-Carlo probability that each arm has the highest true mean, from Beta posteriors."""
    import random

    rng = random.Random(seed)
    wins = dict.fromkeys((name for name, _ in arms), 0)
    params = [(name, 1.0 + a.total, 1.0 + a.n - a.total) for name, a in arms]
    for _ in range(draws):
        name = max(params, key=lambda p: rng.betavariate(p[1], max(p[2], 1e-9)))[0]
        wins[name] += 1
    return {name: wins[name] / draws for name, _ in arms}
