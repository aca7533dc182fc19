"""Deterministic simulations of the sequential test, checked after every outcome (no broker).

They exercise the library's own `msprt`/`variance`/`decide` functions; the figures are printed in
the terminal summary. All of them run in the default suite (a few seconds in total).
"""

from __future__ import annotations

import random
import time

from agents.assignment import thompson_variant
from agents.experiment_stats import DEFAULT_TAU, ArmStats, decide, msprt, variance

ALPHA = 0.05
MIN_SAMPLES = 100


def _experiment(p_a: float, p_b: float, max_per_arm: int, seed: int) -> tuple[str, int]:
    """One two-arm experiment, outcomes alternating between arms, the rule checked after each one.

    Returns (decision, outcomes per arm when it was taken). The rule is `decide`'s, applied through
    the same `msprt`/`variance` functions, inlined here only to keep 2 million checks fast.
    """
    rng = random.Random(seed)
    r = rng.random
    n_a = n_b = s_a = s_b = 0
    for _ in range(max_per_arm):
        for arm in (0, 1):
            if arm == 0:
                n_a += 1
                s_a += r() < p_a
            else:
                n_b += 1
                s_b += r() < p_b
            if n_b < MIN_SAMPLES:
                continue
            _, lo, hi, _ = msprt(s_a / n_a, variance(n_a, s_a, s_a), n_a, s_b / n_b, variance(n_b, s_b, s_b), n_b,
                                 ALPHA, DEFAULT_TAU)
            if lo > 0:
                return "promote", n_b
            if hi < 0:
                return "stop", n_b
    return "continue", max_per_arm


def _power(p_b: float, max_per_arm: int, runs: int, seed0: int) -> tuple[float, int]:
    results = [_experiment(0.5, p_b, max_per_arm, seed0 + s) for s in range(runs)]
    promoted = sorted(n for d, n in results if d == "promote")
    rate = len(promoted) / runs
    p80 = promoted[int(0.8 * runs) - 1] if rate >= 0.8 else -1
    return rate, p80


def test_inlined_rule_matches_decide() -> None:
    """The simulation's inlined check is `decide` itself: both agree on many random states."""
    rng = random.Random(7)
    for _ in range(300):
        a, b = ArmStats(), ArmStats()
        for _ in range(rng.randint(100, 400)):
            a.add(rng.random() < 0.5, 0.0)
            b.add(rng.random() < 0.58, 0.0)
        _, lo, hi, _ = msprt(a.mean, a.variance, a.n, b.mean, b.variance, b.n, ALPHA, DEFAULT_TAU)
        want = "promote" if lo > 0 else "stop" if hi < 0 else "continue"
        assert decide([("v1", a), ("v2", b)], ALPHA, MIN_SAMPLES).decision == want


def test_aa_false_promotion_rate_is_at_most_alpha(figures: list[str]) -> None:
    started = time.perf_counter()
    runs, horizon = 500, 2000
    results = [_experiment(0.5, 0.5, horizon, seed) for seed in range(runs)]
    promoted = sum(d == "promote" for d, _ in results) / runs
    any_decision = sum(d != "continue" for d, _ in results) / runs
    figures.append(f"A/A: {runs} experiments x {horizon}/arm, checked after every outcome: false promotion "
                   f"{promoted:.1%}, any rejection of 'no difference' {any_decision:.1%} (alpha {ALPHA:.0%}) "
                   f"[{time.perf_counter() - started:.1f}s]")
    assert promoted <= ALPHA
    assert any_decision <= ALPHA


def test_lift_50_to_60_is_promoted_within_1000_per_arm(figures: list[str]) -> None:
    started = time.perf_counter()
    rate, p80 = _power(0.60, 1000, 500, 10_000)
    figures.append(f"lift 50%->60%: promoted in {rate:.1%} of 500 experiments within 1,000/arm; "
                   f"80th percentile {p80} outcomes/arm [{time.perf_counter() - started:.1f}s]")
    assert rate >= 0.8


def test_lift_50_to_55_is_promoted_within_3000_per_arm(figures: list[str]) -> None:
    started = time.perf_counter()
    runs = 500
    rate, p80 = _power(0.55, 3000, runs, 20_000)
    figures.append(f"lift 50%->55%: promoted in {rate:.1%} of {runs} experiments within 3,000/arm; "
                   f"80th percentile {p80} outcomes/arm [{time.perf_counter() - started:.1f}s]")
    assert rate >= 0.8


def test_peeking_a_fixed_horizon_z_test_would_fail_where_the_msprt_holds(figures: list[str]) -> None:
    """The reason for the test: a naive |z| > 1.96 checked after every outcome rejects far too often."""
    rejected = 0
    for seed in range(200):
        rng = random.Random(50_000 + seed)
        n = s_a = s_b = 0
        for _ in range(2000):
            n += 1
            s_a += rng.random() < 0.5
            s_b += rng.random() < 0.5
            if n >= MIN_SAMPLES:
                d = (s_b - s_a) / n
                v = (variance(n, s_a, s_a) + variance(n, s_b, s_b)) / n
                if d * d > 1.96**2 * v:
                    rejected += 1
                    break
    figures.append(f"naive z-test peeking after every outcome (A/A, 200 x 2,000/arm): rejects {rejected / 200:.0%}")
    assert rejected / 200 > 2 * ALPHA


def test_bandit_sends_most_traffic_to_the_better_arm(figures: list[str]) -> None:
    shares = []
    for seed in range(20):
        rng = random.Random(seed)
        post = {"v1": [0.0, 0.0], "v2": [0.0, 0.0]}
        truth = {"v1": 0.5, "v2": 0.6}
        pulls = {"v1": 0, "v2": 0}
        for _ in range(2000):
            v = thompson_variant({k: (s, f) for k, (s, f) in post.items()}, rng)
            pulls[v] += 1
            post[v][0 if rng.random() < truth[v] else 1] += 1
        shares.append(pulls["v2"] / 2000)
    mean_share = sum(shares) / len(shares)
    figures.append(f"bandit (Thompson, 50% vs 60%, 20 runs x 2,000 pulls): better arm got {mean_share:.1%} of "
                   f"traffic on average, at least {min(shares):.1%} in every run")
    assert mean_share > 0.75
    assert min(shares) > 0.5
