"""The prompt registry and its CLI against the session's real PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.prompt_chooser import PromptChooser
from agents.prompt_registry import Experiment, PromptRegistry, RegistryError
from agents.prompt_templates import TemplateRenderError
from streams.cli.main import cli
from streams.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(stack_settings: Settings):
    reg = PromptRegistry(stack_settings.postgres_dsn).migrate()
    yield reg
    reg.close()


def test_versions_primary_experiments_and_decisions(registry: PromptRegistry) -> None:
    name = f"p{uuid.uuid4().hex[:8]}"
    v1 = registry.add_version(name, "One {{ task }}", author="ann", metadata={"k": "v"})
    v2 = registry.add_version(name, "Two {{ task }} {{ tenant }}")
    assert (v1.version, v1.is_primary, v2.version, v2.is_primary) == (1, True, 2, False)
    assert v2.variables == ["task", "tenant"] and registry.get(name).version == 1
    assert registry.get(name, 1).metadata == {"k": "v"} and registry.get(name, 1).author == "ann"
    with pytest.raises(TemplateRenderError):
        registry.add_version(name, "{{ unclosed")
    with pytest.raises(RegistryError):
        registry.get(name, 9)
    exp = registry.start_experiment(Experiment(f"e-{name}", name, ["v1", "v2"], alpha=0.01))
    assert exp.status == "running" and exp.weights == [1.0, 1.0] and exp.alpha == 0.01
    with pytest.raises(RegistryError, match="running"):
        registry.start_experiment(Experiment(f"e2-{name}", name, ["v1", "v2"]))
    with pytest.raises(RegistryError):
        registry.start_experiment(Experiment(f"e3-{name}", name, ["v1", "v7"]))
    registry.save_stats(exp.name, {"v1": {"n": 3, "successes": 1}}, 3, {"at": 1.0})
    registry.save_stats(exp.name, {"v1": {"n": 3, "successes": 1}}, 3, {"at": 2.0})  # a replay: no new point
    assert registry.arm_stats(exp.name) == {"v1": {"n": 3, "successes": 1}}
    assert registry.history(exp.name) == [(3, {"at": 1.0})]
    assert registry.record_decision(exp.name, "promote", "v2", "v2 wins")
    assert not registry.record_decision(exp.name, "stop", "v1", "again")  # applied once
    assert registry.get(name).version == 2 and registry.experiment(exp.name).status == "decided"
    registry.set_primary(name, 1)
    assert registry.get(name).version == 1


async def test_chooser_caches_and_invalidates(registry: PromptRegistry) -> None:
    name = f"p{uuid.uuid4().hex[:8]}"
    registry.add_version(name, "first {{ task }}")
    chooser = PromptChooser(registry, ttl_s=3600)
    task = {"task_id": "t1", "description": "d", "capability": name}
    assert (await chooser.choose(task)).system == "first d"
    registry.add_version(name, "second {{ task }}")
    registry.set_primary(name, 2)
    assert (await chooser.choose(task)).system == "first d"  # cached
    chooser.invalidate()
    assert (await chooser.choose(task)).system == "second d"


def _run(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=settings.as_env())
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_prompt_and_experiment_commands(stack_settings: Settings, tmp_path: Path) -> None:
    name = f"p{uuid.uuid4().hex[:8]}"
    f1, f2 = tmp_path / "a.txt", tmp_path / "b.txt"
    f1.write_text("You review {{ task }}.\nBe brief.\n")
    f2.write_text("You review {{ task }} carefully.\nBe brief.\n")
    assert "v1 added (primary)" in _run(stack_settings, "prompt", "add", name, "--file", str(f1), "--author", "ann")
    added = _run(stack_settings, "prompt", "add", name, "--file", str(f2), "--meta", "simulated_success=0.7")
    assert "v2 added" in added
    assert name in _run(stack_settings, "prompt", "list")
    shown = _run(stack_settings, "prompt", "show", name, "--version", "2")
    assert "carefully" in shown and "simulated_success" in shown
    diff = _run(stack_settings, "prompt", "diff", name, "1", "2")
    assert "-You review {{ task }}." in diff and "+You review {{ task }} carefully." in diff
    out = _run(stack_settings, "experiment", "start", f"e-{name}", "--prompt", name, "--variants", "v1,v2",
               "--mode", "bandit", "--min-samples", "50")
    assert "bandit" in out
    assert f"e-{name}" in _run(stack_settings, "experiment", "list")
    report = _run(stack_settings, "experiment", "report", f"e-{name}", "--html", str(tmp_path / "r.html"))
    assert "decision: none yet" in report and (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    assert "stopped" in _run(stack_settings, "experiment", "stop", f"e-{name}")
    bad = CliRunner().invoke(cli, ["prompt", "show", "no-such-prompt"], env=stack_settings.as_env())
    assert bad.exit_code != 0 and "no prompt" in bad.output
    bad = CliRunner().invoke(cli, ["prompt", "add", name, "--file", str(f1), "--meta", "novalue"],
                             env=stack_settings.as_env())
    assert bad.exit_code != 0
