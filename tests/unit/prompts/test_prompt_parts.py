"""Templates, the scoring step, the judge, the chooser's choice and the report, without servers."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime

import pytest

from agents.experiment_report import build_report, render_html, render_text
from agents.experiment_scoring import score_outcome
from agents.judging import SimulatedJudge, experiment_outcome
from agents.prompt_chooser import PromptChooser, _Snapshot
from agents.prompt_registry import Experiment, PromptVersion, RegistryError, variant_version
from agents.prompt_templates import (
    RenderLimits,
    TemplateLimitError,
    TemplateRenderError,
    check_template,
    render,
    template_variables,
)

EXP = Experiment("exp", "review", ["v1", "v2"], [1.0, 1.0], min_samples=20)


def test_render_fills_variables_and_names_a_missing_one() -> None:
    assert render("Review {{ task }} for {{ tenant }}.", {"task": "x", "tenant": "acme"}) == "Review x for acme."
    assert template_variables("{{ b }} {{ a }} {% for i in c %}{{ i }}{% endfor %}") == ["a", "b", "c"]
    with pytest.raises(TemplateRenderError, match="'tenant'") as info:
        render("Review {{ task }} for {{ tenant }}.", {"task": "x"})
    assert info.value.missing == "tenant"
    with pytest.raises(TemplateRenderError, match="parse"):
        template_variables("{{ broken")


@pytest.mark.parametrize("attack", [
    "{{ task.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ task.format.__globals__ }}",
])
def test_render_is_sandboxed(attack: str) -> None:
    with pytest.raises(TemplateRenderError):
        render(attack, {"task": "x"})
    with pytest.raises(TemplateRenderError):  # no loader: no file access
        render("{% include '/etc/passwd' %}", {})


def test_variant_version() -> None:
    assert variant_version("v2") == 2 and variant_version("3") == 3
    with pytest.raises(RegistryError):
        variant_version("best")


def _outcome(i: int, variant: str, success: bool) -> dict:
    return {"outcome_id": f"o{i}", "task_id": f"t{i}", "experiment": "exp", "variant": variant,
            "success": success, "quality": 0.7, "source": "test", "created_at": 0}


def _feed(count: int, p_v2: float, seed: int) -> tuple[dict, list, list]:
    """Alternate outcomes of v1 (40 % success) and v2 through `score_outcome`: (state, steps, decisions)."""
    state, steps, decisions, rng = None, [], [], random.Random(seed)
    for i in range(count):
        variant = "v1" if i % 2 == 0 else "v2"
        step = score_outcome(state, EXP, _outcome(i, variant, rng.random() < (0.4 if variant == "v1" else p_v2)), i)
        state = step.state
        steps.append(step)
        if step.decision:
            decisions.append((i, step.decision))
    return state, steps, decisions


def test_score_outcome_counts_decides_once_and_rejects_unknown_variants() -> None:
    state, steps, decisions = _feed(3000, 0.7, 1)
    step = steps[-1]
    assert state["n"] == 3000 and state["arms"]["v1"]["n"] == 1500
    assert len(decisions) == 1 and decisions[0][1].winner == "v2"
    assert state["decision"]["winner"] == "v2" and state["decision"]["n"] == decisions[0][0] + 1
    assert "v2.lower" in step.point and step.point["v1.n"] == 1500
    with pytest.raises(ValueError, match="v9"):
        score_outcome(state, EXP, _outcome(1, "v9", True), 0)
    stopped = Experiment("exp", "review", ["v1", "v2"], status="stopped", min_samples=20)
    assert score_outcome(None, stopped, _outcome(1, "v1", True), 0).decision is None


async def test_judge_is_deterministic_and_follows_the_version_metadata() -> None:
    def output(i: int) -> dict:
        return {"output_id": f"t{i}:1:1", "task_id": f"t{i}", "status": "ok", "created_at": 5,
                "metadata": {"experiment": "exp", "variant": "v2", "prompt": "review", "prompt_version": "2"}}

    judge = SimulatedJudge()
    good = [await experiment_outcome(judge, output(i), {"simulated_success": "0.8"}) for i in range(2000)]
    assert good[0] == await experiment_outcome(judge, output(0), {"simulated_success": "0.8"})
    assert 0.76 < sum(o["success"] for o in good) / 2000 < 0.84
    assert all(0 <= o["quality"] <= 1 and o["outcome_id"].startswith("judge:") for o in good)
    assert {(o["experiment"], o["variant"], o["source"], o["created_at"]) for o in good} == {("exp", "v2", "judge", 5)}
    assert await experiment_outcome(judge, {**output(1), "metadata": {}}, {}) is None
    assert await experiment_outcome(judge, {**output(1), "status": "failed"}, {}) is None


def _version(name: str, version: int, template: str, primary: bool = False) -> PromptVersion:
    return PromptVersion(name, version, template, template_variables(template), {}, "me",
                         datetime.now(UTC), primary)


def test_chooser_uses_experiments_then_the_primary_then_nothing() -> None:
    snap = _Snapshot()
    for v in (_version("review", 1, "R1 {{ task }}", True), _version("review", 2, "R2 {{ task }}"),
              _version("plan", 1, "P1 for {{ tenant }}", True)):
        snap.versions[(v.name, v.version)] = v
        if v.is_primary:
            snap.primary[v.name] = v.version
    snap.running["review"] = EXP
    chooser = PromptChooser(registry=None, rng=random.Random(0))  # type: ignore[arg-type]
    picks = [chooser.choose_from(snap, {"task_id": f"t{i}", "description": "d", "capability": "review"})
             for i in range(200)]
    assert {p.metadata["variant"] for p in picks} == {"v1", "v2"}
    assert all(p.system == f"R{p.metadata['prompt_version']} d" and p.metadata["experiment"] == "exp" for p in picks)
    again = chooser.choose_from(snap, {"task_id": "t7", "description": "d", "capability": "review"})
    assert again == picks[7]  # sticky
    plan = chooser.choose_from(snap, {"task_id": "x", "description": "d", "capability": "plan"})
    assert plan.system == "P1 for default" and "experiment" not in plan.metadata
    assert chooser.choose_from(snap, {"task_id": "x", "description": "d", "capability": "testing"}) is None
    bandit = Experiment("b", "review", ["v1", "v2"], mode="bandit")
    snap.running["review"] = bandit
    snap.posteriors["b"] = {"v1": (5, 95), "v2": (95, 5)}
    picks = [chooser.choose_from(snap, {"task_id": f"t{i}", "description": "d", "capability": "review"})
             for i in range(50)]
    assert sum(p.metadata["variant"] == "v2" for p in picks) > 45


def test_report_text_and_self_contained_html() -> None:
    state, steps, _ = _feed(1200, 0.6, 2)
    history = [(s.state["n"], s.point) for s in steps]
    decided = Experiment(**{**EXP.__dict__, "status": "decided", "decision": "promote", "winner": "v2",
                            "reason": "v2 beats v1", "decided_at": datetime(2026, 1, 1, tzinfo=UTC)})
    report = build_report(decided, state["arms"], history)
    text = render_text(report)
    assert "v1" in text and "v2" in text and "decision: promote v2 at 2026-01-01" in text
    assert "always-valid interval" in text
    assert report.best["v2"] > 0.95
    page = render_html(report)
    assert page.count("<svg") == 2 and "<polygon" in page and "<polyline" in page
    assert "<script" not in page and not re.search(r"(src|href)=\"https?:", page)
    empty = render_html(build_report(EXP, {}, []))
    assert "No interval yet" in empty and "decision: none yet" in render_text(build_report(EXP, {}, []))


async def test_chooser_keeps_working_when_the_registry_is_unreachable() -> None:
    from agents.prompt_registry import PromptRegistry

    chooser = PromptChooser(PromptRegistry("postgresql://nobody@127.0.0.1:9/none?connect_timeout=1"), ttl_s=0)
    assert await chooser.choose({"task_id": "t", "description": "d", "capability": "review"}) is None


def test_report_with_three_variants() -> None:
    exp = Experiment("e3", "review", ["v1", "v2", "v3"], min_samples=20)
    state, history, rng = None, [], random.Random(4)
    rates = {"v1": 0.4, "v2": 0.45, "v3": 0.7}
    for i in range(900):
        variant = ("v1", "v2", "v3")[i % 3]
        outcome = {"outcome_id": str(i), "variant": variant, "success": rng.random() < rates[variant], "quality": 0.5}
        step = score_outcome(state, exp, outcome, i)
        state = step.state
        history.append((state["n"], step.point))
    report = build_report(exp, state["arms"], history)
    assert report.current.winner == "v3" and max(report.best, key=report.best.get) == "v3"
    page = render_html(report)
    assert "v2 - v1" in page and "v3 - v1" in page


def test_a_replay_pin_chooses_that_version_outside_any_experiment() -> None:
    snap = _Snapshot()
    for v in (_version("review", 1, "R1 {{ task }}", True), _version("review", 2, "R2 {{ task }}")):
        snap.versions[(v.name, v.version)] = v
    snap.primary["review"] = 1
    snap.running["review"] = EXP
    chooser = PromptChooser(registry=None, rng=random.Random(0))  # type: ignore[arg-type]
    task = {"task_id": "t1", "description": "d", "capability": "review", "metadata": {"prompt.review": "v2"}}
    pinned = chooser.choose_from(snap, task)
    assert pinned.system == "R2 d" and pinned.metadata["pinned"] == "true" and "experiment" not in pinned.metadata
    for bad in ("v9", "latest"):  # an unknown or unreadable pin falls back to the normal choice
        chosen = chooser.choose_from(snap, {**task, "metadata": {"prompt.review": bad}})
        assert "pinned" not in chosen.metadata and chosen.metadata["experiment"] == "exp"


BIG = RenderLimits(max_chars=100_000, timeout_s=0.5)


@pytest.mark.parametrize(("template", "why"), [
    ("{{ 'A' * 200000000 }}", "repeating 1 characters 200000000 times"),
    ("{{ [task] * 100000 }}", "repeating"),
    ("{{ 9**99999999 }}", "more than 4300 digits"),
    ("{{ 'x'.ljust(1000000000) }}", "an argument of 1000000000"),
    ("{{ '{:>999999999}'.format(1) }}", "a width of 999999999"),
    ("{{ '%999999999d' % 1 }}", "a width of 999999999"),
    ("{{ task.replace('a', task * 10) }}", "characters"),
    ("{{ task|replace('a', task) }}", "replacing"),
    ("{{ range(10000)|join(task) }}", "joining 10000 items"),
    ("{% set x %}{% for i in range(1000) %}{{ task }}{% endfor %}{% endset %}{{ x|length }}", "a block of"),
    ("{% set ns = namespace(s=task) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "a value"),
    ("{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ f(task, 40) }}", "a value"),
    ("{% for i in range(1000) %}{{ task }}{% endfor %}", "the output is longer than the 100000 characters"),
    ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", "longer than 0.5 s"),
    ("{% for a in task %}{% for b in task %}{% endfor %}{% endfor %}", "longer than 0.5 s"),
    ("{% for i in range(100000) %}{% endfor %}", "a range of 100000 numbers"),
])
def test_the_sandbox_refuses_what_would_cost_too_much(template: str, why: str) -> None:
    """Each of these would take gigabytes or minutes unchecked; each is refused, saying which limit."""
    with pytest.raises(TemplateLimitError, match=re.escape(why)) as info:
        render(template, {"task": "a" * 2000}, BIG)
    assert info.value.limit == ("time" if why.startswith("longer than") else "size")


def test_the_sandbox_still_renders_ordinary_templates_and_has_no_padding_filters() -> None:
    template = ("You review {{ task|truncate(20) }} for {{ tenant|upper }}.{% for i in range(3) %} {{ i }}{% endfor %}"
                "{% if capability == 'review' %} Be brief.{% endif %} {{ [3, 1, 2]|sort|join(',') }} {{ 2**10 }}")
    out = render(template, {"task": "t" * 50, "tenant": "acme", "capability": "review"}, BIG)
    assert out == f"You review {'t' * 17}... for ACME. 0 1 2 Be brief. 1,2,3 1024"
    with pytest.raises(TemplateRenderError, match="No filter named 'center'"):
        render("{{ task|center(1000000000) }}", {"task": "x"})


def test_check_template_refuses_with_the_reason_and_passes_good_ones() -> None:
    check_template("You review {{ task }} for {{ tenant }} ({{ capability }}, {{ task_id }}).")
    with pytest.raises(TemplateLimitError, match="repeating"):
        check_template("{{ task * 1000 }}", RenderLimits(max_chars=100_000))
    with pytest.raises(TemplateRenderError, match="'notes'"):
        check_template("{{ task }} {{ notes }}")


def test_prompt_add_refuses_a_template_that_breaks_the_limits_with_the_reason(tmp_path) -> None:
    from click.testing import CliRunner

    from streams.cli.main import cli

    bomb = tmp_path / "bomb.j2"
    bomb.write_text("{{ 'A' * 200000000 }}")
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1"}  # never reached
    result = CliRunner().invoke(cli, ["prompt", "add", "review", "--file", str(bomb)], env=env)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert "review: not added: template refused: repeating 1 characters 200000000 times" in result.output
    slow = tmp_path / "slow.j2"
    slow.write_text("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}{{ task }}")
    result = CliRunner().invoke(cli, ["prompt", "add", "review", "--file", str(slow)],
                                env={**env, "AGENTSTREAM_PROMPT_RENDER_TIMEOUT_S": "0.2"})
    assert "not added: template refused: rendering took longer than 0.2 s" in result.output


def test_the_chooser_falls_back_to_the_built_in_prompt_when_a_template_is_refused() -> None:
    snap = _Snapshot()
    for v in (_version("review", 1, "R {{ task * 100 }}", True),
              _version("plan", 1, "{% for a in task %}{% for b in task %}{% endfor %}{% endfor %}P", True)):
        snap.versions[(v.name, v.version)] = v
        snap.primary[v.name] = v.version
    chooser = PromptChooser(registry=None, limits=RenderLimits(max_chars=10_000, timeout_s=0.2))  # type: ignore[arg-type]
    assert chooser.choose_from(snap, {"task_id": "t", "description": "short", "capability": "review"}).system \
        == "R " + "short" * 100
    assert chooser.choose_from(snap, {"task_id": "t", "description": "x" * 200, "capability": "review"}) is None
    assert chooser.choose_from(snap, {"task_id": "t", "description": "x" * 5000, "capability": "plan"}) is None
    assert ("plan", 1) in chooser._too_slow  # not rendered again for the next task
