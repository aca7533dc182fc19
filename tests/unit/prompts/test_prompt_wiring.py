"""The runner's prompt hook and the worker's wiring of the prompt processors (no servers)."""

from __future__ import annotations

from typing import Any

from agents.factory import RunnerConfig, build_runner
from agents.models import register_models
from agents.prompt_chooser import ChosenPrompt
from agents.simulator import install_simulator
from schemas import default_codec
from streams.processors.guard import Guard
from streams.processors.scoring import prompt_processors
from streams.settings import Settings
from streams.topics import table_specs


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


def test_the_worker_runs_scoring_and_the_judge_on_ordered_consumers_and_no_table(tmp_path) -> None:
    settings = Settings(AGENTSTREAM_DATA_DIR=tmp_path, AGENTSTREAM_APP_ID="wiring", AGENTSTREAM_PARTITIONS=3)
    guard = Guard(default_codec(), _never_sent)
    consumers = prompt_processors(settings, default_codec(), guard, lambda topic: _never_sent, lambda: None)
    assert {(c.group_id, tuple(c.topics)) for c in consumers} == {
        ("wiring-score", ("prompt.outcomes",)), ("wiring-judge", ("agent.outputs",))}
    quiet = Settings(AGENTSTREAM_DATA_DIR=tmp_path, AGENTSTREAM_APP_ID="wiring", AGENTSTREAM_JUDGE_ENABLED=False)
    assert [c.name for c in prompt_processors(quiet, default_codec(), guard, lambda topic: _never_sent,
                                              lambda: None)] == ["score"]
    # the experiments' state is in PostgreSQL: the only state topics are the task stage's ledgers
    assert {s.name for s in table_specs(settings)} == {"agent.ledger.spend", "agent.ledger.tasks"}


async def _never_sent(key: bytes | None, value: bytes) -> None:
    raise AssertionError("nothing is sent while wiring")
