"""Replay on the real stack: recorded traffic re-run in isolation, judged, compared; production untouched."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from memory_helpers import result, wrap
from psycopg import sql
from pydantic import SecretStr

from agents.prompt_registry import Experiment, PromptRegistry
from schemas import default_codec
from streams import kafka
from streams.admin import ensure_topics
from streams.cli.main import cli
from streams.client import ResultWatcher, end_offsets, make_task, submit_tasks
from streams.demo.run import load_sample_tasks
from streams.harness import running, start_sinks, start_worker
from streams.memory.tiers import build_tiers
from streams.processors.ledger import tenant_partition
from streams.replay.range import Bound, parse_bound, read_range
from streams.replay.run import eval_settings
from streams.replay.store import load_run
from streams.settings import Settings
from streams.topics import ALL_TOPICS, OUTPUTS, RESULTS, TASKS

pytestmark = pytest.mark.integration

codec = default_codec()


@dataclass(frozen=True)
class Recorded:
    settings: Settings
    task_ids: list[str]
    midpoint: str  # ISO time between the first and the second hundred tasks


def _tenant_per_partition(partitions: int) -> list[str]:
    """Tenant names whose tasks land in each partition in turn (tasks are keyed by tenant)."""
    found: dict[int, str] = {}
    for n in itertools.count():
        found.setdefault(tenant_partition(f"team-{n}".encode(), partitions), f"team-{n}")
        if len(found) == partitions:
            return [found[p] for p in range(partitions)]
    raise AssertionError("unreachable")


async def _record(settings: Settings) -> Recorded:
    async with ResultWatcher(settings, codec) as watcher:
        tasks = load_sample_tasks(200, uuid.uuid4().hex[:6])
        tenants = _tenant_per_partition(settings.partitions)  # every partition gets 200 / partitions tasks
        for n, task in enumerate(tasks):
            task["tenant"] = tenants[n % len(tenants)]
        ids = await submit_tasks(settings, codec, tasks[:100])
        await asyncio.sleep(0.3)
        midpoint = datetime.now(UTC).isoformat()
        await asyncio.sleep(0.3)
        ids += await submit_tasks(settings, codec, tasks[100:])
        results = await watcher.wait(ids, 240)
    assert len(results) == 200
    return Recorded(settings, ids, midpoint)


# Two versions of the `coding` prompt (named after the capability); v2 is much longer, so it costs more.
PROMPT_V1 = "You are the coder. Do this task well: {{ task }}"
PROMPT_V2 = ("You are a senior engineer on the {{ tenant }} team. Before you write code, restate the task in one "
             "sentence, list the modules you will touch and the tests that will prove the change, and name the "
             "risks (data loss, concurrency, performance, security). Then make the smallest change that passes "
             "the tests, explain every step and what you checked, and end with what a reviewer should look at "
             "first. Keep the public interface stable unless the task asks otherwise. Task ({{ capability }}, "
             "{{ task_id }}): {{ task }}")


def _own_database(settings: Settings, name: str) -> SecretStr:
    """A fresh database in the session's PostgreSQL: this module's 'production' tables, prompt registry included.

    The registry has no scope of its own, so prompts named after real capabilities stay out of other tests.
    """
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return SecretStr(f"{settings.postgres_dsn.rsplit('/', 1)[0]}/{name}")


@pytest.fixture(scope="module")
def recorded(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """200 tasks answered by a 'production' worker (model simulator/balanced-1) on topics of this module.

    Production's registry holds two versions of the `coding` prompt, v1 primary: coding tasks ran with v1.
    """
    run = uuid.uuid4().hex[:8]
    # Production pins its model (AGENTSTREAM_MODEL), so replays compare against one known model.
    settings = stack_settings.isolated(f"r{run}", model="simulator/balanced-1",
                                       database_url=_own_database(stack_settings, f"r{run}"))
    asyncio.run(ensure_topics(settings))
    folder = tmp_path_factory.mktemp("prompts")
    for version, text in ((1, PROMPT_V1), (2, PROMPT_V2)):
        (folder / f"v{version}.j2").write_text(text)
        assert f"coding v{version} added" in _cli(settings, "prompt", "add", "coding", "--file",
                                                  str(folder / f"v{version}.j2"), "--author", "test")
    with running(start_worker(settings, f"worker-r{run}.log")):
        yield asyncio.run(_record(settings))


async def _production_ends(settings: Settings) -> dict[str, dict[int, int]]:
    consumer = kafka.consumer(settings)
    await consumer.start()
    try:
        return {name: {tp.partition: end for tp, end in (await end_offsets(settings, consumer,
                                                                           settings.topic(name))).items()}
                for name in ALL_TOPICS}
    finally:
        await consumer.stop()


def _tables(settings: Settings) -> dict[str, tuple[int, str]]:
    """Every table of the settings' database with its row count and a digest of its rows."""
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {name: conn.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY "
                                           "t::text), '')) FROM {} t").format(sql.Identifier(name))).fetchone()
                for name in names}


async def _records(settings: Settings, topic: str) -> list[dict]:
    return [r.record for r in await read_range(settings, codec, settings.topic(topic), Bound("earliest"),
                                               Bound("now")) if r.record is not None]


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


@pytest.mark.slow  # in make test-slow: make test stays under 15 minutes on 2 cores
def test_the_same_range_replayed_twice_gives_identical_outputs_and_scores(recorded: Recorded) -> None:
    s = recorded.settings
    for name in ("det-1", "det-2"):  # production's own version, pinned
        out = _cli(s, "replay", "--from", "0", "--to", "5", "--name", name, "--prompt", "coding=v1")
        assert f"run {name}: 20 tasks" in out and "0 without a result" in out
    first, second = load_run(s, "det-1"), load_run(s, "det-2")
    assert [r.task_id for r in first.rows] == [r.task_id for r in second.rows]
    assert [(r.output, r.score, r.cost_usd) for r in first.rows] == [(r.output, r.score, r.cost_usd)
                                                                      for r in second.rows]
    assert all(r.status == "ok" and 0 < r.score <= 1 for r in first.rows)
    assert first.meta["prompts"] == ["coding=1"] and first.meta["eval_topic_prefix"] == f"{s.topic_prefix}eval-det-1."
    out = _cli(s, "replay", "compare", "det-1", "det-2")
    assert "20 tasks paired, 0 with a different output" in out
    # Same model as production: the originals are the same answers too.
    out = _cli(s, "replay", "compare", "production:0..5", "det-1")
    assert "20 tasks paired, 0 with a different output" in out


def test_without_a_model_override_each_step_runs_on_the_model_production_used(recorded: Recorded) -> None:
    """Production pinned simulator/balanced-1; whoever replays has another AGENTSTREAM_MODEL (or routes): a
    replay without --model still runs every step on the model its recorded AgentOutput used."""
    s = recorded.settings
    replayer = s.model_copy(update={"model": "simulator/fast-1"})
    out = _cli(replayer, "replay", "--from", "0", "--to", "5", "--name", "faithful")
    assert "run faithful: 20 tasks" in out and "model as recorded" in out and "0 without a result" in out
    production = {(o["task_id"], o["step"]): o["model"] for o in asyncio.run(_records(s, OUTPUTS))}
    replayed = asyncio.run(_records(eval_settings(s, "faithful"), OUTPUTS))
    assert len(replayed) >= 20
    differing = [(o["task_id"], o["step"], o["model"], production.get((o["task_id"], o["step"])), o["metadata"])
                 for o in replayed if o["model"] != production.get((o["task_id"], o["step"])) or
                 o["model"] != "simulator/balanced-1"]
    assert differing == []
    out = _cli(replayer, "replay", "compare", "production:0..5", "faithful")
    assert "20 tasks paired, 0 with a different output" in out
    # With --model the override wins over the recorded models.
    out = _cli(replayer, "replay", "--from", "0", "--to", "2", "--name", "overridden", "--model", "simulator/fast-1")
    assert {r.model for r in load_run(s, "overridden").rows} == {"simulator/fast-1"}


@pytest.mark.slow  # in make test-slow: make test stays under 15 minutes on 2 cores
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


_ROW = re.compile(r"^(demo-\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s+(same|differs)$")


@pytest.mark.slow  # make test-slow: make test stays under 15 min on 2 cores
def test_200_tasks_replayed_with_another_prompt_version_compare_and_leave_production_alone(recorded: Recorded,
                                                                                          tmp_path) -> None:
    """`--prompt coding=2` on production's traffic (v1 primary), while an experiment on `coding` runs."""
    s = recorded.settings
    tasks = asyncio.run(_records(s, TASKS))
    coding = {t["task_id"] for t in tasks if t["capability"] == "coding"}
    assert len(tasks) == 200 and 0 < len(coding) < 200
    registry = PromptRegistry(s.postgres_dsn)
    # A live experiment on the same prompt: a replay that fed it would change the arms' statistics.
    live = registry.start_experiment(Experiment(f"live-{uuid.uuid4().hex[:6]}", "coding", ["v1", "v2"])).name
    try:
        topics, tables = asyncio.run(_production_ends(s)), _tables(s)
        started = time.monotonic()
        out = _cli(s, "replay", "--from", "earliest", "--to", "now", "--prompt", "coding=2", "--name", "coding-v2")
        assert "run coding-v2: 200 tasks" in out and "0 without a result" in out
        rows = {r.task_id: r.prompt for r in load_run(s, "coding-v2").rows}
        assert rows == {tid: "coding=2" if tid in coding else "" for tid in recorded.task_ids}

        # What each side recorded: production ran coding with v1 (the primary), the replay with v2, pinned.
        replayed = eval_settings(s, "coding-v2")
        for topic in (OUTPUTS, RESULTS):
            for records, version, pinned in ((asyncio.run(_records(s, topic)), "1", None),
                                             (asyncio.run(_records(replayed, topic)), "2", "true")):
                used = [r for r in records if r["metadata"].get("prompt") == "coding"]
                assert {r["task_id"] for r in used} == coding, topic
                assert {(r["metadata"]["prompt_version"], r["metadata"].get("pinned")) for r in used} == \
                       {(version, pinned)}, topic
                assert not [r for r in records if "experiment" in r["metadata"]]
        for output in asyncio.run(_records(replayed, OUTPUTS)):
            if output["task_id"] in coding and output["metadata"]["role"] == "coding":
                assert output["metadata"]["prompt_version"] == "2", output  # every coding step, every pattern

        report = tmp_path / "prompt.html"
        out = _cli(s, "replay", "compare", "production:earliest..now", "coding-v2", "--html", str(report),
                   "--rows", "200")
        assert f"200 tasks paired, {len(coding)} with a different output" in out
        assert f"prompt versions: A coding=1 x{len(coding)}; B coding=2 x{len(coding)}" in out
        per_task = {m[1]: m.groups()[1:] for m in map(_ROW.match, out.splitlines()) if m}
        assert set(per_task) == set(recorded.task_ids)
        for tid, (score_a, score_b, cost_a, cost_b, output) in per_task.items():
            if tid in coding:  # the longer prompt costs more on every task that used it
                assert output == "differs" and float(cost_b) > float(cost_a), (tid, per_task[tid])
            else:  # other prompts and the model are unchanged: the same answers, the same scores
                assert (output, score_a, cost_a) == ("same", score_b, cost_b), (tid, per_task[tid])
        assert sum(per_task[t][0] != per_task[t][1] for t in coding) >= len(coding) // 2  # the judge sees it too
        aggregates = {line.split()[0]: line for line in out.splitlines() if line.split()[:2] in
                      (["score", "200"], ["cost_usd", "200"], ["latency_ms", "200"])}
        assert set(aggregates) == {"score", "cost_usd", "latency_ms"}
        assert all(re.search(r"\[[-+][\d.]+, [-+][\d.]+\]", line) for line in aggregates.values())
        assert aggregates["cost_usd"].endswith("*") and aggregates["cost_usd"].split()[4].startswith("+")
        html = report.read_text()
        assert html.count("coding=1 / coding=2") == len(coding) and html.count("<details>") == len(coding)

        assert asyncio.run(_production_ends(s)) == topics
        assert _tables(s) == tables  # the registry, experiment statistics, memory: not a row changed
        assert registry.get("coding").version == 1 and registry.arm_stats(live) == {}
        print(f"prompt replay of 200 tasks + compare: {time.monotonic() - started:.1f}s")
    finally:
        registry.stop_experiment(live)
        registry.close()


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
def test_the_replay_demo_compares_two_prompt_versions(isolated: Settings) -> None:
    from streams.demo.replay import DEMO_PROMPT

    out = _cli(isolated, "replay", "demo", "--tasks", "6")
    assert "6 tasks paired, 6 with a different output" in out and "HTML report:" in out
    assert f"prompt versions: A {DEMO_PROMPT}=1 x6; B {DEMO_PROMPT}=2 x6" in out
    assert re.search(r"production \(v1\) vs demo-v1-\w+: 6/6 tasks with the same output", out), out
    report = Path(re.search(r"HTML report: (\S+)", out)[1]).read_text()
    assert report.count(f"{DEMO_PROMPT}=1 / {DEMO_PROMPT}=2") == 6


@pytest.mark.slow
def test_the_replay_demo_reproduces_production_answered_by_other_workers(isolated: Settings) -> None:
    """Another worker of the same group, routing models itself, answers part (or all) of production; the
    replay of production's prompt version still gives production's answers, and the demo exits 0."""
    asyncio.run(ensure_topics(isolated))
    with running(start_worker(isolated.model_copy(update={"model": "simulator/quality-1"}), "other-worker.log")):
        result = CliRunner().invoke(cli, ["replay", "demo", "--tasks", "8"], env=isolated.as_env())
    assert result.exit_code == 0, result.output
    assert re.search(r"production \(v1\) vs demo-v1-\w+: 8/8 tasks with the same output", result.output)
    assert "SELF-CHECK FAILED" not in result.output


def test_kafka_and_the_archive_give_the_same_range(recorded: Recorded) -> None:
    """The sink processors archive the recorded traffic; both sources then yield the same tasks."""
    from streams.memory.tiers import build_archive
    from streams.replay.archive_range import read_archive_range

    s = recorded.settings
    topic = s.topic(TASKS)
    with running(start_sinks(s, f"sinks-{s.app_id}.log")):
        deadline = time.monotonic() + 180
        while len(read_archive_range(build_archive(s), codec, topic, Bound("earliest"), Bound("now"))) < 200:
            assert time.monotonic() < deadline, "the archive sink did not archive the recorded tasks in time"
            time.sleep(1.0)
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


PAST = ["Added retry with exponential backoff and jitter to the payments HTTP client",
        "Planned the zero-downtime migration of the orders table to monthly partitions",
        "Documented the rate limiter's public API: token bucket size, refill rate, headers"]
LATER = ["Make the payments HTTP client retry failed requests with backoff and jitter",
         "Partition the orders table by month without downtime",
         "Document the rate limiter API: bucket size, refill rate and headers"]


@pytest.mark.slow  # three worker starts (about 30 s quiet, 50-110 s on a loaded machine); make test has the parts:
# test_replay_units (pinning), test_memory_tiers (L3 fetch by id), test_runner_memory (memories reach the model)
def test_a_replay_recalls_what_production_recalled_whatever_was_stored_since(isolated: Settings) -> None:
    """Production's tasks recalled memories; more (closer) memories are stored afterwards. A replay pinned to
    production's models gives production's outputs, because each task gets the memory ids production recalled;
    `--fresh-memory` searches today's tiers, finds the new memories and answers differently."""
    # L1 caches a search for memory_cache_ttl_s: 1 s, so the fresh replay's searches are not production's cached.
    s = isolated.model_copy(update={"model": "simulator/fast-1", "memory_cache_ttl_s": 1})
    asyncio.run(ensure_topics(s))
    tiers = build_tiers(s, {"vectors", "postgres"})
    for tier in tiers.values():
        tier.setup()
        tier.write([wrap("TaskResult", result(f"past-{n}", text)) for n, text in enumerate(PAST)])
    tasks = [make_task(text, pattern="fast", tenant="default") for text in LATER]
    with running(start_worker(s, f"worker-{s.app_id}.log")):
        asyncio.run(_record_tasks(s, tasks))
    production = {o["task_id"]: o["metadata"]["memory_ids"] for o in asyncio.run(_records(s, OUTPUTS))}
    assert all(production[t["task_id"]] for t in tasks), production  # every task recalled something
    for tier in tiers.values():  # stored since: each one nearer to its task than what production recalled
        tier.write([wrap("TaskResult", result(f"new-{n}", text)) for n, text in enumerate(LATER)])
        tier.close()

    out = _cli(s, "replay", "--from", "0", "--to", "now", "--name", "pinned")
    assert "run pinned: 3 tasks" in out and "0 without a result" in out
    replayed = {o["task_id"]: o["metadata"]["memory_ids"] for o in
                asyncio.run(_records(eval_settings(s, "pinned"), OUTPUTS))}
    assert replayed == production
    assert "3 tasks paired, 0 with a different output" in _cli(s, "replay", "compare", "production:0..now", "pinned")

    out = _cli(s, "replay", "--from", "0", "--to", "now", "--name", "fresh", "--fresh-memory")
    fresh = {o["task_id"]: o["metadata"]["memory_ids"] for o in
             asyncio.run(_records(eval_settings(s, "fresh"), OUTPUTS))}
    assert all("TaskResult:new-" in fresh[t["task_id"]] for t in tasks), fresh
    assert ", 0 with a different output" not in _cli(s, "replay", "compare", "production:0..now", "fresh")


async def _record_tasks(settings: Settings, tasks: list[dict]) -> None:
    async with ResultWatcher(settings, codec) as watcher:
        ids = await submit_tasks(settings, codec, tasks)
        assert len(await watcher.wait(ids, 180)) == len(tasks)  # a busy machine starts a worker slowly
