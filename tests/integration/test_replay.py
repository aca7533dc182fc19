"""Replay on the real stack: recorded traffic re-run in isolation, judged, compared; production untouched."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer
from click.testing import CliRunner

from schemas import default_codec
from streams.admin import ensure_topics
from streams.cli import cli
from streams.client import ResultWatcher, end_offsets, submit_tasks
from streams.demo import load_sample_tasks, start_worker, stop_worker
from streams.replay.range import Bound, parse_bound, read_range
from streams.replay.store import load_run
from streams.settings import Settings
from streams.topics import ALL_TOPICS, TASKS

pytestmark = pytest.mark.integration

codec = default_codec()


@dataclass(frozen=True)
class Recorded:
    settings: Settings
    task_ids: list[str]
    midpoint: str  # ISO time between the first and the second hundred tasks


async def _record(settings: Settings) -> Recorded:
    watcher = ResultWatcher(settings, codec)
    await watcher.start()
    try:
        tasks = load_sample_tasks(200, uuid.uuid4().hex[:6])
        ids = await submit_tasks(settings, codec, tasks[:100])
        await asyncio.sleep(0.3)
        midpoint = datetime.now(UTC).isoformat()
        await asyncio.sleep(0.3)
        ids += await submit_tasks(settings, codec, tasks[100:])
        results = await watcher.wait(ids, 240)
    finally:
        await watcher.stop()
    assert len(results) == 200
    return Recorded(settings, ids, midpoint)


@pytest.fixture(scope="module")
def recorded(stack_settings: Settings) -> Iterator[Recorded]:
    """200 tasks answered by a 'production' worker (model simulator/balanced-1) on topics of this module."""
    run = uuid.uuid4().hex[:8]
    # Production pins its model (AGENTSTREAM_MODEL), so replays compare against one known model.
    settings = stack_settings.model_copy(update={"topic_prefix": f"r{run}.", "app_id": f"agentstream-r{run}",
                                                 "model": "simulator/balanced-1"})
    asyncio.run(ensure_topics(settings))
    worker = start_worker(settings, f"worker-r{run}.log")
    try:
        yield asyncio.run(_record(settings))
    finally:
        stop_worker(worker)


async def _production_ends(settings: Settings) -> dict[str, dict[int, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        return {name: {tp.partition: end for tp, end in (await end_offsets(settings, consumer,
                                                                           settings.topic(name))).items()}
                for name in ALL_TOPICS}
    finally:
        await consumer.stop()


def _cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=settings.as_env(), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_ranges_by_offset_and_by_time(recorded: Recorded) -> None:
    s = recorded.settings
    everything = await read_range(s, codec, s.topic(TASKS), Bound("earliest"), Bound("now"))
    assert sorted(r.record["task_id"] for r in everything) == sorted(recorded.task_ids)
    second_half = await read_range(s, codec, s.topic(TASKS), parse_bound(recorded.midpoint), Bound("now"))
    assert {r.record["task_id"] for r in second_half} == set(recorded.task_ids[100:])
    first_half = await read_range(s, codec, s.topic(TASKS), Bound("earliest"), parse_bound(recorded.midpoint))
    assert {r.record["task_id"] for r in first_half} == set(recorded.task_ids[:100])
    seen: list[tuple[int, int]] = []
    window = await read_range(s, codec, s.topic(TASKS), Bound("offset", 3), Bound("offset", 8),
                              on_progress=lambda done, total: seen.append((done, total)))
    assert len(window) == 5 * s.partitions and {r.offset for r in window} == set(range(3, 8))
    assert seen[0] == (0, 20) and seen[-1] == (20, 20)


def test_the_same_range_replayed_twice_gives_identical_outputs_and_scores(recorded: Recorded) -> None:
    s = recorded.settings
    for name in ("det-1", "det-2"):
        out = _cli(s, "replay", "--from", "0", "--to", "5", "--name", name, "--prompt", "coder=v2")
        assert f"run {name}: 20 tasks" in out and "0 without a result" in out
    first, second = load_run(s, "det-1"), load_run(s, "det-2")
    assert [r.task_id for r in first.rows] == [r.task_id for r in second.rows]
    assert [(r.output, r.score, r.cost_usd) for r in first.rows] == [(r.output, r.score, r.cost_usd)
                                                                      for r in second.rows]
    assert all(r.status == "ok" and 0 < r.score <= 1 for r in first.rows)
    assert first.meta["prompts"] == ["coder=v2"] and first.meta["eval_topic_prefix"] == f"{s.topic_prefix}eval-det-1."
    out = _cli(s, "replay", "compare", "det-1", "det-2")
    assert "20 tasks paired, 0 with a different output" in out
    # Same model as production: the originals are the same answers too.
    out = _cli(s, "replay", "compare", "production:0..5", "det-1")
    assert "20 tasks paired, 0 with a different output" in out


def test_200_tasks_replayed_with_another_model_compare_and_leave_production_alone(recorded: Recorded,
                                                                                   tmp_path) -> None:
    s = recorded.settings
    before = asyncio.run(_production_ends(s))
    started = time.monotonic()
    out = _cli(s, "replay", "--from", "earliest", "--to", "now", "--model", "simulator/fast-1",
               "--pattern", "quality", "--name", "cheaper")
    assert "run cheaper: 200 tasks" in out and "0 without a result" in out
    run = load_run(s, "cheaper")
    assert {r.model for r in run.rows} == {"simulator/fast-1"} and run.meta["pattern"] == "quality"
    report = tmp_path / "report.html"
    out = _cli(s, "replay", "compare", "production:earliest..now", "cheaper", "--html", str(report), "--rows", "5")
    assert "200 tasks paired, 200 with a different output" in out
    cost = next(line for line in out.splitlines() if line.startswith("cost_usd"))
    assert cost.split()[1] == "200" and cost.endswith("*")  # fast-1 is cheaper on every task: significant
    assert "--- output diff for" in out and "+++ cheaper" in out, out
    html = report.read_text()
    assert html.count("<svg") >= 5 and "<details>" in html and "http://" not in html and "https://" not in html
    assert asyncio.run(_production_ends(s)) == before
    print(f"replay of 200 tasks + compare: {time.monotonic() - started:.1f}s")


def test_bad_arguments_are_clear_errors(recorded: Recorded) -> None:
    s = recorded.settings
    runner = CliRunner()
    result = runner.invoke(cli, ["replay", "--from", "yesterday", "--name", "x"], env=s.as_env())
    assert result.exit_code == 2 and "ISO timestamp" in result.output
    result = runner.invoke(cli, ["replay", "--from", "0"], env=s.as_env())
    assert result.exit_code == 2 and "--name" in result.output
    result = runner.invoke(cli, ["replay", "--from", "now", "--to", "now", "--name", "empty"], env=s.as_env())
    assert result.exit_code == 1 and "nothing to replay" in result.output
    result = runner.invoke(cli, ["replay", "compare", "nope", "det-1"], env=s.as_env())
    assert result.exit_code == 1 and "no replay run named 'nope'" in result.output


@pytest.mark.slow
def test_the_replay_demo_compares_two_models(isolated: Settings) -> None:
    out = _cli(isolated, "replay", "demo", "--tasks", "6")
    assert "6 tasks paired, 6 with a different output" in out and "HTML report:" in out
    assert "production (simulator/balanced-1) vs demo-fast-1-" in out


def test_kafka_and_the_archive_give_the_same_range(recorded: Recorded) -> None:
    """The sink processors archive the recorded traffic; both sources then yield the same tasks."""
    from streams.memory import build_archive
    from streams.replay.archive_range import read_archive_range
    from streams.sink_service import start_sinks

    s = recorded.settings
    topic = s.topic(TASKS)
    sinks = start_sinks(s, f"sinks-{s.app_id}.log")
    try:
        deadline = time.monotonic() + 180
        while len(read_archive_range(build_archive(s), codec, topic, Bound("earliest"), Bound("now"))) < 200:
            assert time.monotonic() < deadline, "the archive sink did not archive the recorded tasks in time"
            time.sleep(1.0)
    finally:
        stop_worker(sinks)
    archive = build_archive(s)
    for start, end in ((Bound("earliest"), Bound("now")), (parse_bound(recorded.midpoint), Bound("now")),
                       (Bound("offset", 5), Bound("offset", 20))):
        from_kafka = asyncio.run(read_range(s, codec, topic, start, end))
        from_archive = read_archive_range(archive, codec, topic, start, end)
        assert [(r.partition, r.offset, r.record["task_id"]) for r in from_kafka] == \
               [(r.partition, r.offset, r.record["task_id"]) for r in from_archive]
        assert from_kafka, (start, end)
    half = read_archive_range(archive, codec, topic, parse_bound(recorded.midpoint), Bound("now"))
    assert {r.record["task_id"] for r in half} == set(recorded.task_ids[100:])
