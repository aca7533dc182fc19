"""Deterministic simulations of the sequential test, the product's `decide` called after every outcome.

Each experiment draws outcomes for its arms (in turn, as split mode does over many tasks, or by
Thompson sampling, as bandit mode does) and asks `decide` after every single one, from the first
(below the minimum sample) to the decision, exactly as the scoring step does. The error rates are
measured where the rule promises them: no false promotion (A/A, two and three arms), no wrong stop
(a worse challenger, futility against a lift that is there). The figures are printed in the terminal
summary; the seeds are fixed, so a run is repeatable, and the whole file takes seconds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from agents.assignment import thompson_variant
from agents.experiment_stats import ArmStats, decide, variance

ALPHA = 0.05
MIN_SAMPLES = 100


@dataclass(frozen=True)
class Ended:
    """How one simulated experiment ended: the decision, its winner, and the outcomes counted by then."""

    decision: str
    winner: str | None
    outcomes: int
    smallest_arm: int


def _experiment(truth: Sequence[float], per_arm: int, seed: int, *, min_effect: float = 0.0,
                bandit: bool = False) -> Ended:
    """Up to `per_arm` outcomes per arm (on average, in bandit mode); `decide` after each one."""
    rng = random.Random(seed)
    names = [f"v{k + 1}" for k in range(len(truth))]
    arms = [(name, ArmStats()) for name in names]
    for t in range(per_arm * len(truth)):
        if bandit:
            k = names.index(thompson_variant({n: (a.successes, a.n - a.successes) for n, a in arms}, rng))
        else:
            k = t % len(truth)
        arms[k][1].add(rng.random() < truth[k], 0.0)
        verdict = decide(arms, ALPHA, MIN_SAMPLES, min_effect=min_effect)
        if verdict.decision != "continue":
            return Ended(verdict.decision, verdict.winner, t + 1, min(a.n for _, a in arms))
    return Ended("continue", None, per_arm * len(truth), min(a.n for _, a in arms))


def _many(truth: Sequence[float], per_arm: int, runs: int, seed0: int, **kw: object) -> list[Ended]:
    ended = [_experiment(truth, per_arm, seed0 + s, **kw) for s in range(runs)]  # type: ignore[arg-type]
    assert all(e.smallest_arm >= MIN_SAMPLES for e in ended if e.decision != "continue")  # never below it
    return ended


def _share(ended: list[Ended], decision: str, winner: str | None = None) -> float:
    return sum(e.decision == decision and (winner is None or e.winner == winner) for e in ended) / len(ended)


def _p80(ended: list[Ended], arms: int) -> int:
    """Outcomes per arm by which 80 % of the experiments had decided (-1: fewer did)."""
    done = sorted(e.outcomes // arms for e in ended if e.decision != "continue")
    return done[int(0.8 * len(ended)) - 1] if len(done) >= 0.8 * len(ended) else -1


def test_aa_two_arms_false_promotion_and_any_decision_at_most_alpha(figures: list[str]) -> None:
    started = time.perf_counter()
    runs, horizon = 200, 1000
    ended = _many([0.5, 0.5], horizon, runs, 0)
    promoted, decided = _share(ended, "promote"), 1 - _share(ended, "continue")
    figures.append(f"A/A: {runs} experiments x {horizon}/arm, `decide` after every outcome: false promotion "
                   f"{promoted:.1%}, any decision {decided:.1%} (alpha {ALPHA:.0%}) "
                   f"[{time.perf_counter() - started:.1f}s]")
    assert promoted <= ALPHA
    assert decided <= ALPHA


def test_a_lift_is_promoted_and_a_worse_challenger_stopped(figures: list[str]) -> None:
    started = time.perf_counter()
    lift10, lift5 = _many([0.5, 0.6], 1000, 150, 10_000), _many([0.5, 0.55], 3000, 60, 20_000)
    worse = _many([0.6, 0.5], 1000, 150, 30_000)
    figures.append(f"lift 50%->60%: promoted in {_share(lift10, 'promote', 'v2'):.1%} of 150 within 1,000/arm "
                   f"(80% by {_p80(lift10, 2)}/arm); 50%->55%: {_share(lift5, 'promote', 'v2'):.1%} of 60 within "
                   f"3,000/arm (80% by {_p80(lift5, 2)}/arm); 60%->50%: stopped in {_share(worse, 'stop', 'v1'):.1%} "
                   f"of 150 within 1,000/arm [{time.perf_counter() - started:.1f}s]")
    assert _share(lift10, "promote", "v2") >= 0.8 and _share(lift5, "promote", "v2") >= 0.8
    assert _share(worse, "stop", "v1") >= 0.8
    assert _share(lift10, "stop") + _share(lift5, "stop") == 0 and _share(worse, "promote") <= ALPHA


def test_futility_stops_a_useless_challenger_and_rarely_one_with_the_wanted_lift(figures: list[str]) -> None:
    """With `min_effect` 0.1 the rule stops once no lift of 10 points is still possible. It must do so
    for an equal challenger, and stop one whose true lift is exactly 10 points at most alpha of the time."""
    started = time.perf_counter()
    useless = _many([0.5, 0.5], 1000, 150, 40_000, min_effect=0.1)
    wanted = _many([0.5, 0.6], 1000, 150, 50_000, min_effect=0.1)
    figures.append(f"futility (min effect 10 points): A/A stopped in {_share(useless, 'stop'):.1%} of 150 within "
                   f"1,000/arm (80% by {_p80(useless, 2)}/arm); a true 10-point lift stopped in "
                   f"{_share(wanted, 'stop'):.1%} (alpha {ALPHA:.0%}) [{time.perf_counter() - started:.1f}s]")
    assert _share(useless, "stop", "v1") >= 0.8 and _share(useless, "promote") <= ALPHA
    assert _share(wanted, "stop") <= ALPHA


def test_three_arms_bonferroni_keeps_the_familywise_error_and_finds_the_best(figures: list[str]) -> None:
    started = time.perf_counter()
    null = _many([0.5, 0.5, 0.5], 1000, 120, 60_000)
    best = _many([0.5, 0.5, 0.62], 1500, 60, 70_000)
    figures.append(f"three arms (alpha/2 per challenger): A/A/A any promotion {_share(null, 'promote'):.1%}, any "
                   f"decision {1 - _share(null, 'continue'):.1%} of 120 x 1,000/arm; 50/50/62%: v3 promoted in "
                   f"{_share(best, 'promote', 'v3'):.1%} of 60 within 1,500/arm, v2 in "
                   f"{_share(best, 'promote', 'v2'):.1%} [{time.perf_counter() - started:.1f}s]")
    assert _share(null, "promote") <= ALPHA and 1 - _share(null, "continue") <= ALPHA
    assert _share(best, "promote", "v3") >= 0.8 and _share(best, "promote", "v2") <= ALPHA


def test_bandit_allocation_keeps_false_promotions_rare(figures: list[str]) -> None:
    """Thompson sampling makes the outcomes depend on each other, so the mSPRT's bound is no longer a
    theorem here (agents/experiment_stats.py says so): this is the rate it keeps, in runs where both
    arms got enough outcomes for the rule to speak."""
    started = time.perf_counter()
    null = _many([0.5, 0.5], 1000, 100, 80_000, bandit=True)
    could = sum(e.smallest_arm >= MIN_SAMPLES for e in null) / len(null)
    figures.append(f"bandit (Thompson): A/A false promotion {_share(null, 'promote'):.1%}, any decision "
                   f"{1 - _share(null, 'continue'):.1%} of 100 x 2,000 pulls (both arms past the minimum in "
                   f"{could:.0%}) [{time.perf_counter() - started:.1f}s]")
    assert could >= 0.8
    assert _share(null, "promote") <= ALPHA and 1 - _share(null, "continue") <= ALPHA


@pytest.mark.xfail(reason="bandit mode starves the control: it stays below min_samples (typically 20-60 "
                          "outcomes of 2,000 at 50% vs 75%), so `decide` never decides", strict=True)
def test_bandit_mode_decides_a_clear_lift(figures: list[str]) -> None:
    lift = _many([0.5, 0.75], 1000, 20, 90_000, bandit=True)
    starved = sorted(e.smallest_arm for e in lift)[len(lift) // 2]
    figures.append(f"bandit (Thompson) 50%->75%: v2 promoted in {_share(lift, 'promote', 'v2'):.0%} of 20 x 2,000 "
                   f"pulls; median outcomes of the smaller arm {starved} (minimum {MIN_SAMPLES})")
    assert _share(lift, "promote", "v2") >= 0.8


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
