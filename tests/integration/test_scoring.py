"""Prompt scoring on its ordered consumer, with its state in the real PostgreSQL: every outcome counted
once (a redelivered one counts nothing), an outcome that cannot be scored is a dead letter at stage
`score` and the next one is still counted, and a decision is sent again when an outcome of a decided
experiment comes back (so a crash between the database and the topic never loses it)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from agents.prompt_registry import Experiment, PromptRegistry
from schemas import default_codec
from streams import kafka
from streams.admin import ensure_topics
from streams.client import read_topic
from streams.processors.guard import Guard, topic_sender
from streams.processors.scoring import prompt_processors
from streams.settings import Settings
from streams.topics import DEADLETTERS, PROMPT_DECISIONS, PROMPT_OUTCOMES

pytestmark = pytest.mark.integration

codec = default_codec()


def _outcome(experiment: str, n: int, variant: str, success: bool) -> dict:
    return {"outcome_id": f"o-{n}", "task_id": f"t-{n}", "experiment": experiment, "variant": variant,
            "success": success, "quality": 1.0 if success else 0.0, "source": "test", "created_at": 1}


async def _records(settings: Settings, topic: str) -> list[dict]:
    return [r.record async for r in read_topic(settings, codec, settings.topic(topic), from_beginning=True,
                                               idle_timeout_s=1.5) if r.record]


async def test_outcomes_count_once_a_bad_one_is_dead_lettered_and_a_decision_is_sent_again(
        isolated: Settings) -> None:
    await ensure_topics(isolated)
    run = uuid.uuid4().hex[:8]
    prompt, name = f"score-{run}", f"exp-{run}"
    registry = PromptRegistry(isolated.postgres_dsn).migrate()
    registry.add_version(prompt, "Answer {{ task }} briefly.")
    registry.add_version(prompt, "Answer {{ task }} with care.")
    registry.start_experiment(Experiment(name, prompt, ["v1", "v2"], min_samples=10, alpha=0.05))
    decided: list[int] = []
    producer = kafka.producer(isolated)
    await producer.start()

    def send(topic: str):
        return topic_sender(producer, isolated.topic(topic))

    (score,) = prompt_processors(isolated.model_copy(update={"judge_enabled": False}), codec,
                                 Guard(codec, send(DEADLETTERS)), send, lambda: decided.append(1))
    outcomes = [_outcome(name, n, "v1" if n % 2 else "v2", success=n % 2 == 0) for n in range(40)]
    bad = _outcome(f"no-such-{run}", 999, "v1", True)
    stop = asyncio.Event()
    job = asyncio.create_task(score.run(stop))
    try:
        for outcome in [outcomes[0], bad, *outcomes[:20], *outcomes[:10], *outcomes[20:]]:  # 11 sent again
            await producer.send_and_wait(isolated.topic(PROMPT_OUTCOMES), codec.encode("PromptOutcome", outcome),
                                         key=outcome["experiment"].encode())
        deadline = asyncio.get_running_loop().time() + 90
        while score.handled + score.dead < 1 + 1 + 20 + 10 + 20:
            assert asyncio.get_running_loop().time() < deadline, (score.handled, score.dead)
            await asyncio.sleep(0.2)
        after_decision = await asyncio.to_thread(registry.experiment_state, name)
        await producer.send_and_wait(isolated.topic(PROMPT_OUTCOMES), codec.encode("PromptOutcome", outcomes[5]),
                                     key=name.encode())  # an outcome of the decided experiment, read again
        while score.handled + score.dead < 53:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await job
        await producer.stop()
    state = registry.experiment_state(name)
    assert state is not None and state["n"] == 40  # 40 distinct outcomes; 12 repeats and the bad one not counted
    assert sum(a["n"] for a in registry.arm_stats(name).values()) == 40
    assert after_decision is not None and after_decision["decision"]["decision"] == "promote"
    assert registry.experiment(name).winner == "v2" and registry.get(prompt).version == 2
    assert decided == [1]  # the prompt cache was dropped once, when the decision was taken
    decisions = [d for d in await _records(isolated, PROMPT_DECISIONS) if d["experiment"] == name]
    # one when it was taken, then once more for each outcome of the decided experiment read again
    assert len(decisions) >= 2 and {d["decision_id"] for d in decisions} == {f"{name}:promote"}
    dead = await _records(isolated, DEADLETTERS)
    assert [(d["stage"], codec.decode_as("PromptOutcome", d["payload"])["outcome_id"]) for d in dead] == [
        ("score", "o-999")]
    assert "no experiment" in dead[0]["error"]
    registry.close()
