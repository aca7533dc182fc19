"""The risk manager's pure parts: control state, alert folding, the detectors, lite mode in the runner."""

from __future__ import annotations

import asyncio

import pytest

from agents.factory import RunnerConfig, build_runner
from agents.simulator import install_simulator
from streams.cli.control import parse_duration
from streams.risk.alerts import AlertFolder
from streams.risk.control import ControlState, command_key, lite_mode_command
from streams.risk.detectors import GLOBAL, Burst, Conflicts, CostSpikes, exposures

AWS = "AKIA" + "Q3EGRT7PLMZX5VBN"  # a generated, never-issued key id of the documented shape


def test_lite_mode_state_follows_the_latest_command_per_scope_and_expires() -> None:
    state = ControlState()
    assert state.lite_scope("acme", now=1000) is None
    state.apply(lite_mode_command(True, "test", "cli:me", tenant="acme", for_s=10, now=1000))
    assert state.lite_scope("acme", now=2000) == "tenant"
    assert state.lite_scope("other", now=2000) is None
    assert state.lite_scope("acme", now=11_001) is None  # expired
    state.apply(lite_mode_command(True, "all", "cli:me", now=3000))
    assert state.lite_scope("other", now=4000) == "global"
    state.apply(lite_mode_command(False, "done", "cli:me", now=5000))
    assert state.lite_scope("other", now=6000) is None
    assert command_key(lite_mode_command(True, "x", "y", tenant="acme")) == b"lite_mode|tenant|acme"
    assert command_key(lite_mode_command(False, "x", "y")) == b"lite_mode|global"


def test_durations() -> None:
    assert parse_duration("90s") == 90 and parse_duration("30m") == 1800 and parse_duration("1h30m") == 5400
    assert parse_duration("2") == 2
    with pytest.raises(Exception, match="duration"):
        parse_duration("soon")


def test_alerts_of_one_kind_and_tenant_fold_into_one_with_a_count() -> None:
    folder = AlertFolder(fold_ms=1000)
    for n in range(5):
        folder.note("key_exposure", "critical", "acme", "s", {}, now=100 + n, lists={"locations": [f"p0@{n}"]})
    folder.note("key_exposure", "critical", "other", "s", {}, now=105)
    assert folder.due(now=500) == []
    due = sorted(folder.due(now=1200), key=lambda a: a["tenant"])
    assert [(a["tenant"], a["count"]) for a in due] == [("acme", 5), ("other", 1)]
    assert due[0]["first_seen"] == 100 and due[0]["last_seen"] == 104
    assert due[0]["details"]["locations"] == "p0@0, p0@1, p0@2, p0@3, p0@4"
    folder.note("cost_spike", "critical", "acme", "now", {}, now=2000, fold=False)
    assert [a["kind"] for a in folder.due(now=2000)] == ["cost_spike"]


def _spikes() -> CostSpikes:
    return CostSpikes(window_ms=1000, baseline_ms=4000, factor=3.0, floor_usd=0.5, calm_ms=2000, lite_ms=60_000)


def test_a_tenant_spike_is_found_against_its_baseline_and_released_after_calm() -> None:
    spikes = _spikes()
    for t in range(0, 6000, 100):  # two tenants at a steady 1 USD/s
        spikes.add("steady", 0.1, t)
        spikes.add("burst", 0.1, t)
        assert spikes.evaluate(t) == []
    for t in range(6000, 7000, 10):  # burst: 10 USD/s
        spikes.add("steady", 0.1, t) if t % 100 == 0 else None
        spikes.add("burst", 0.1, t)
    changes = spikes.evaluate(7000)
    assert [(c.scope, c.change) for c in changes] == [("burst", "spike")]  # the overall scope leaves it to the tenant
    assert changes[0].current_usd > 3 * changes[0].baseline_usd
    released = []
    for t in range(7000, 12_000, 100):  # back to the steady rate
        spikes.add("steady", 0.1, t)
        spikes.add("burst", 0.1, t)
        released += [(c.scope, c.change, t) for c in spikes.evaluate(t)]
    assert [r[:2] for r in released] == [("burst", "release")]
    assert released[0][2] >= 7000 + 2000  # calm only once the burst left the window, then for the calm period


def test_no_spike_below_the_floor_or_before_a_baseline_exists() -> None:
    spikes = _spikes()
    for t in range(0, 3000, 10):
        spikes.add("new", 0.1, t)
    assert spikes.evaluate(3000) == []  # 10 USD/s, but seen for less than window + baseline
    quiet = _spikes()
    for t in range(0, 8000, 1000):
        quiet.add("small", 0.01, t)
    for t in range(8000, 9000, 10):
        quiet.add("small", 0.004, t)
    assert quiet.evaluate(9000) == []  # 40x the baseline, but 0.4 USD is under the floor


def test_everyone_spiking_is_a_global_spike() -> None:
    spikes = CostSpikes(window_ms=1000, baseline_ms=4000, factor=3.0, floor_usd=2.0, calm_ms=2000, lite_ms=60_000)
    for t in range(0, 6000, 100):
        for n in range(10):
            spikes.add(f"t{n}", 0.01, t)
    for t in range(6000, 7000, 10):
        for n in range(10):
            spikes.add(f"t{n}", 0.01, t)  # each tenant stays under the floor, together 10x over it
    assert [(c.scope, c.change) for c in spikes.evaluate(7000)] == [(GLOBAL, "spike")]


def test_exposures_name_field_and_kind_never_the_secret() -> None:
    found = exposures({"task_id": "t", "description": f"deploy with {AWS}", "metadata": {"note": "ok", "k": AWS}})
    assert set(found) == {"description", "metadata.k"}
    assert found["description"]["aws_access_key"] == 1
    assert AWS not in repr(found)
    assert exposures({"task_id": "t", "description": "nothing secret here"}) == {}


def test_conflicts_and_bursts() -> None:
    conflicts = Conflicts(keep_ms=1000)
    result = {"task_id": "t1", "status": "ok", "output": "a", "model": "m"}
    assert conflicts.add(result, "r[0]@1", 0) is None
    assert conflicts.add(dict(result), "r[0]@2", 10) is None  # the same content again: a harmless redelivery
    conflict = conflicts.add({**result, "output": "b"}, "r[1]@3", 20)
    assert conflict is not None and conflict.task_id == "t1" and "r[0]@1" in conflict.first
    assert conflicts.add({**result, "output": "c"}, "r[0]@4", 5000) is None  # forgotten after keep_ms
    burst = Burst(window_ms=100)
    assert [burst.add(t) for t in (0, 10, 50, 120, 200)] == [1, 2, 3, 2, 2]


def test_lite_mode_runs_quality_as_fast_on_the_cheapest_model_and_says_so() -> None:
    install_simulator()
    runner = build_runner(RunnerConfig())
    task = {"task_id": "t-lite", "description": "write a parser", "pattern": "quality", "tenant": "acme",
            "created_at": 1}
    normal = asyncio.run(runner.run(task))
    runner.lite_mode = lambda tenant: "tenant" if tenant == "acme" else None
    lite = asyncio.run(runner.run({**task, "task_id": "t-lite-2"}))
    other = asyncio.run(runner.run({**task, "task_id": "t-lite-3", "tenant": "other"}))
    assert normal.result["steps"] > 1 and "lite_mode" not in normal.result["metadata"]
    assert lite.result["steps"] == 1 and lite.result["metadata"]["lite_mode"] == "tenant"
    assert lite.result["metadata"]["pattern"] == "fast" and lite.result["metadata"]["requested_pattern"] == "quality"
    assert lite.result["model"] == "simulator/fast-1" and lite.outputs[0]["metadata"]["lite_mode"] == "tenant"
    assert lite.result["cost_usd"] < normal.result["cost_usd"]
    assert other.result["steps"] == normal.result["steps"] and "lite_mode" not in other.result["metadata"]


async def test_an_alert_the_topic_refuses_is_kept_and_published_later() -> None:
    from streams.risk.alerts import Alerts

    sent: list[dict] = []
    down = True

    async def send(alert: dict) -> None:
        if down:
            raise ConnectionError("broker down")
        sent.append(alert)

    alerts = Alerts(send, fold_s=1.0)
    alerts.raise_("budget_exhausted", "warning", "acme", "spent", now=0)
    assert await alerts.publish_due(now=2000) == [] and sent == []
    alerts.raise_("budget_exhausted", "warning", "acme", "spent", now=2500)  # folded into the kept one
    down = False
    published = await alerts.publish_due(now=2600)
    assert [(a["count"], a["first_seen"]) for a in published] == [(2, 0)] and sent == published


def test_the_spend_clock_follows_the_results_while_they_flow_and_the_wall_clock_once_idle() -> None:
    from schemas import default_codec
    from streams.processors.guard import Guard
    from streams.risk.processor import RiskStage
    from streams.settings import Settings

    async def nowhere(_key: bytes | None, _value: bytes) -> None:
        return None

    wall = [100_000]
    stage = RiskStage(Settings(AGENTSTREAM_RISK_TICK_S=0.5), default_codec(), Guard(default_codec(), nowhere),
                      lambda _topic: nowhere, clock=lambda: wall[0])
    assert stage._spend_clock() == 100_000  # idle: the wall clock
    stage._last_record, stage._watermark = 100_000, 150_000  # results created after a pause flow in
    wall[0] = 100_500
    assert stage._spend_clock() == 150_000
    stage._watermark = 160_000  # a stage lagging behind the wall clock keeps the results' own time
    wall[0] = 100_900
    assert stage._spend_clock() == 160_000
    wall[0] = 200_000  # idle again: time passes (and never goes back)
    assert stage._spend_clock() == 200_000
