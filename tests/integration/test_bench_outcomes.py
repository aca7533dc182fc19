"""`agentstream bench --only outcomes` on a small workload: each of the four lines comes from its two runs."""

from __future__ import annotations

import pytest

from streams.bench.outcomes import outcomes_bench, workload
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_workload_repeats_and_relates_questions_and_mixes_patterns() -> None:
    tasks = workload(60)
    descriptions = [t["description"] for t in tasks]
    assert 0 < len(set(descriptions)) < len(descriptions)  # some repeat an earlier one, most do not
    assert {t["pattern"] for t in tasks} == {"fast", "balanced", "quality"}
    assert len({t["optimization"] for t in tasks}) >= 3 and workload(60) == tasks  # the same every run


def test_each_outcome_is_computed_from_the_run_with_the_feature_and_the_run_without(isolated: Settings,
                                                                                     capsys) -> None:
    runs = outcomes_bench(isolated, tasks=24, latency_ms=150.0, jitter_ms=30.0, coordination_tasks=12)
    found = {o.name: o for o in runs}
    assert set(found) == {"coordination", "caching", "routing", "predictive context"}
    speed = found["coordination"]
    assert speed.baseline > speed.feature > 0 and speed.figure == pytest.approx(speed.baseline / speed.feature)
    for name in ("caching", "routing", "predictive context"):
        cut = found[name]
        assert cut.baseline > 0 and cut.figure == pytest.approx(1 - cut.feature / cut.baseline), name
    assert 0 < found["caching"].feature < found["caching"].baseline  # repeats are answered by L1
    assert found["routing"].feature < found["routing"].baseline  # cheaper models for cost/balanced tasks
    printed = capsys.readouterr().out
    for outcome in found.values():
        assert outcome.line() in printed and ("NOT met" in outcome.line()) != outcome.met
