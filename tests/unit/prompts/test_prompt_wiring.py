"""The runner's prompt hook and the app wiring of the prompt processors (no servers)."""

from __future__ import annotations

from typing import Any

from agents.factory import RunnerConfig, build_runner
from agents.models import register_models
from agents.prompt_chooser import ChosenPrompt, PromptChooser
from agents.simulator import install_simulator
from schemas import default_codec
from streams.app import build_app
from streams.settings import Settings
from streams.topics import changelog_topic, table_specs


class _FixedChooser:
    """Stands in for the registry-backed chooser: always the same prompt and variant."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def choose(self, task: dict[str, Any]) -> ChosenPrompt:
        self.seen.append(task)
        return ChosenPrompt("SYSTEM v2", {"prompt": "review", "prompt_version": "2", "experiment": "e",
                                          "variant": "v2"})


async def test_runner_records_the_chosen_variant_on_its_output() -> None:
    install_simulator()
    register_models()
    chooser = _FixedChooser()
    task = {"task_id": "t1", "description": "check it", "capability": "review", "created_at": 1}
    run = await build_runner(RunnerConfig(), prompts=chooser).run(task)  # type: ignore[arg-type]
    meta = run.outputs[0]["metadata"]
    chosen = {"pattern": "fast", "prompt": "review", "prompt_version": "2", "experiment": "e", "variant": "v2"}
    assert chosen.items() <= meta.items()
    assert {k: v for k, v in chosen.items() if k != "pattern"}.items() <= run.result["metadata"].items()
    assert chooser.seen == [task]
    default_codec().encode("AgentOutput", run.outputs[0])  # still fits the contract
    plain = await build_runner(RunnerConfig()).run(task)
    assert "variant" not in plain.outputs[0]["metadata"] and plain.outputs[0]["metadata"]["pattern"] == "fast"
    assert "prompt_version" not in plain.result["metadata"]
    assert plain.outputs[0]["output"] != run.outputs[0]["output"]  # the system prompt reached the model


def test_the_app_has_the_prompt_processors_and_tables_only_with_a_chooser(tmp_path) -> None:
    settings = Settings(AGENTSTREAM_DATA_DIR=tmp_path, AGENTSTREAM_APP_ID="wiring", AGENTSTREAM_PARTITIONS=3)
    app = build_app(settings, build_runner(RunnerConfig(), prompts=PromptChooser(None)),  # type: ignore[arg-type]
                    default_codec())
    assert {"prompt-scoring", "prompt-judge"} <= {a.name.rsplit(".", 1)[-1] for a in app.agents.values()}
    assert {t.changelog_topic.get_topic_name() for t in app.tables.values()} == {
        changelog_topic(settings, "prompt-scores"), changelog_topic(settings, "prompt-seen")}
    assert {("wiring-prompt-scores-changelog", 3, True), ("wiring-prompt-seen-changelog", 3, True)} <= {
        (s.name, s.partitions, s.compacted) for s in table_specs(settings)}
    bare = build_app(settings, build_runner(RunnerConfig()), default_codec())
    assert not bare.tables  # the task stage keeps its state in its ledger topics, not in Faust tables
