"""The decision rule, the running statistics and the assignment functions, case by case."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from agents.assignment import hash_unit, split_variant, thompson_variant
from agents.experiment_stats import ArmStats, beta_interval, decide, msprt, prob_best


def _arm(n: int, successes: int, quality: float = 0.5) -> ArmStats:
    arm = ArmStats()
    for i in range(n):
        arm.add(i < successes, quality)
    return arm


def test_running_averages() -> None:
    arm = ArmStats()
    for s, q in [(True, 1.0), (False, 0.0), (True, 0.5), (True, 0.9)]:
        arm.add(s, q)
    assert arm.n == 4 and arm.successes == 3 and arm.rate == 0.75
    assert arm.mean_quality == pytest.approx(0.6)
    assert 0 < arm.ema_success < 1 and 0 < arm.ema_quality < 1
    assert ArmStats.from_dict(arm.to_dict()) == arm
    quality = ArmStats()
    quality.add(False, 0.8, metric="quality")
    assert quality.mean == 0.8 and quality.rate == 0.0


def test_variance_never_zero() -> None:
    assert _arm(200, 200).variance > 0
    assert _arm(200, 0).variance > 0
    assert ArmStats().variance == pytest.approx(0.25)


def test_decide_waits_for_min_samples_and_needs_two_arms() -> None:
    assert decide([("v1", _arm(50, 10)), ("v2", _arm(50, 50))], min_samples=100).decision == "continue"
    assert decide([("v1", _arm(500, 10))]).decision == "continue"


def test_decide_promotes_a_clear_winner_with_its_interval() -> None:
    d = decide([("v1", _arm(1000, 500)), ("v2", _arm(1000, 650))])
    assert d.decision == "promote" and d.winner == "v2"
    assert d.stats["v2.lower"] > 0 and d.stats["v2.diff"] == pytest.approx(0.15)


def test_decide_picks_the_best_of_three_and_stops_on_a_worse_one() -> None:
    d = decide([("v1", _arm(1000, 500)), ("v2", _arm(1000, 600)), ("v3", _arm(1000, 700))])
    assert (d.decision, d.winner) == ("promote", "v3")
    stop = decide([("v1", _arm(1000, 600)), ("v2", _arm(1000, 400))])
    assert (stop.decision, stop.winner) == ("stop", "v1")


def test_futility_stops_when_no_worthwhile_lift_is_possible() -> None:
    arms = [("v1", _arm(4000, 2000)), ("v2", _arm(4000, 2000))]
    assert decide(arms, min_effect=0.0).decision == "continue"
    assert decide(arms, min_effect=0.1).decision == "stop"


def test_msprt_interval_is_wider_than_fixed_horizon_and_shrinks() -> None:
    d, lo, hi, _ = msprt(0.5, 0.25, 100, 0.55, 0.25, 100, 0.05)
    assert lo < d < hi and (hi - lo) / 2 > 1.96 * (0.5 / 100) ** 0.5
    _, lo2, hi2, _ = msprt(0.5, 0.25, 10_000, 0.55, 0.25, 10_000, 0.05)
    assert hi2 - lo2 < hi - lo and lo2 > 0


def test_beta_interval_and_prob_best() -> None:
    lo, hi = beta_interval(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)
    p = prob_best([("v1", _arm(200, 100)), ("v2", _arm(200, 140))])
    assert p["v2"] > 0.99 and sum(p.values()) == pytest.approx(1.0)


def test_split_is_sticky_weighted_and_validated() -> None:
    keys = [f"task-{i}" for i in range(6000)]
    first = [split_variant("exp", k, ["a", "b"], [1, 3]) for k in keys]
    assert first == [split_variant("exp", k, ["a", "b"], [1, 3]) for k in keys]
    share = Counter(first)["b"] / len(keys)
    assert 0.72 < share < 0.78
    other = [split_variant("exp2", k, ["a", "b"]) for k in keys]
    assert other != [split_variant("exp", k, ["a", "b"]) for k in keys]  # experiments split independently
    assert 0 <= hash_unit("e", "k") < 1
    with pytest.raises(ValueError):
        split_variant("exp", "k", ["a", "b"], [1])
    with pytest.raises(ValueError):
        split_variant("exp", "k", [])


def test_thompson_prefers_the_arm_with_more_evidence_of_success() -> None:
    rng = random.Random(3)
    picks = Counter(thompson_variant({"a": (10, 90), "b": (90, 10)}, rng) for _ in range(200))
    assert picks["b"] > 190
    with pytest.raises(ValueError):
        thompson_variant({}, rng)
