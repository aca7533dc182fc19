"""An evaluation run: re-run a recorded range of agent.tasks in isolation, judge it, keep it as a Run.

Isolation is the project's own: the run gets a topic prefix (`<prefix>eval-<name>.`) and a consumer
group of its own, and its own worker process (whose AGENTSTREAM_MODEL is the model override). Nothing
is written to a production topic: the range is only read, without a consumer group.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from agents.factory import build_judge
from agents.judging import DEFAULT_JUDGE_MODEL, Candidate, Judge
from agents.redaction import redact, redact_task
from agents.simulator import install_simulator
from schemas import Codec
from schemas.events import Record
from streams.admin import ensure_topics
from streams.client import Received, submit_and_wait
from streams.harness import start_worker, stop
from streams.replay.range import Bound, read_range
from streams.replay.store import Run, TaskRow, run_dir, save_run
from streams.settings import Settings
from streams.topics import RESULTS, TASKS

__all__ = ["ReplaySpec", "eval_settings", "make_judge", "prepare_tasks", "production_run", "read_source",
           "run_replay"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReplaySpec:
    """What to replay and with which overrides."""

    name: str
    start: Bound
    end: Bound
    topic: str = TASKS
    source: str = "kafka"
    model: str | None = None
    pattern: str | None = None
    prompts: tuple[str, ...] = ()  # NAME=VERSION: pinned in each replayed task's metadata (prompt.NAME)
    judge_model: str = DEFAULT_JUDGE_MODEL
    timeout_s: float = 300.0


def eval_settings(settings: Settings, name: str, model: str | None = None) -> Settings:
    """The settings of an evaluation run: own topic prefix, own consumer group, the model override.

    The prompt judge is off: the registry (experiment statistics, decisions, primaries) is production's and
    has no topic prefix, so outputs of a replay must never become prompt outcomes.
    """
    return settings.isolated(f"eval-{name}", model=model or settings.model, judge_enabled=False)


def make_judge(settings: Settings, model: str = DEFAULT_JUDGE_MODEL) -> Judge:
    """Replay's judge: the model judge over the configured models and agents, `model` tried first (so two
    runs are graded by the same model), with its own budget ledger; the offline simulator is registered
    so `simulator/*` models answer. A model missing from the table is a ValueError."""
    from streams.worker import runner_config

    install_simulator(0.0, 0.0)
    return build_judge(dataclasses.replace(runner_config(settings), pinned_model=model))


def prepare_tasks(records: list[Received], spec: ReplaySpec) -> list[Record]:
    """The TaskRequested records of the range, redacted, with the overrides applied; one per task_id, first wins.

    Redacted here, so neither the replayed worker, the judge nor the run's files see a secret of the record."""
    tasks: dict[str, Record] = {}
    for r in records:
        if r.event_type != "TaskRequested" or r.record is None or r.record["task_id"] in tasks:
            continue
        task = redact_task(r.record)
        meta = dict(task.get("metadata") or {})
        meta.update({"replay_run": spec.name, "replay_of": f"{r.topic}:{r.partition}:{r.offset}"})
        for prompt in spec.prompts:
            name, _, version = prompt.partition("=")
            meta[f"prompt.{name}"] = version
        task["metadata"] = meta
        if spec.pattern:
            task["pattern"] = spec.pattern
        tasks[task["task_id"]] = task
    return list(tasks.values())


async def _judge_rows(judge: Judge, tasks: list[Record], results: dict[str, Record]) -> list[TaskRow]:
    rows = []
    for task in tasks:
        result = results.get(task["task_id"])
        if result is None:
            rows.append(TaskRow(task["task_id"], task["description"], "missing", "", "", 0.0, 0.0, 0.0))
            continue
        output = redact(result["output"])  # a result read back from the topic: whoever wrote it
        verdict = (await judge.judge(task, [Candidate(task["task_id"], output)])).verdicts[0]
        rows.append(TaskRow(task["task_id"], task["description"], result["status"], output,
                            result["model"], verdict.score, result["cost_usd"], result["latency_ms"],
                            verdict.model, verdict.cost_usd, _prompt_label(result)))
    return rows


def _prompt_label(result: Record) -> str:
    """`NAME=VERSION` of the registry prompt recorded on a result, "" when the agents' own prompts ran."""
    meta = result.get("metadata") or {}
    return f"{meta['prompt']}={meta['prompt_version']}" if meta.get("prompt_version") else ""


async def read_source(settings: Settings, codec: Codec, spec: ReplaySpec,
                      on_read: Progress | None = None) -> list[Received]:
    """The recorded records of the spec's range, from Kafka or from the L4 archive (same bounds)."""
    if spec.source == "kafka":
        return await read_range(settings, codec, settings.topic(spec.topic), spec.start, spec.end, on_read)
    from streams.memory.tiers import build_archive
    from streams.replay.archive_range import read_archive_range

    return read_archive_range(build_archive(settings), codec, settings.topic(spec.topic), spec.start, spec.end,
                              on_read)


async def run_replay(settings: Settings, codec: Codec, spec: ReplaySpec, *, judge: Judge | None = None,
                     on_read: Progress | None = None, on_result: Progress | None = None) -> Run:
    """Read the range, run it on an isolated worker, judge every answer, save and return the run."""
    folder = run_dir(settings, spec.name)
    judge = judge or make_judge(settings, spec.judge_model)  # a judge model not in the table fails before the run
    records = await read_source(settings, codec, spec, on_read)
    tasks = prepare_tasks(records, spec)
    if not tasks:
        raise ValueError(f"no TaskRequested records in [{spec.start} .. {spec.end}) of {settings.topic(spec.topic)} "
                         f"({len(records)} records read): nothing to replay")
    isolated = eval_settings(settings, spec.name, spec.model)
    await ensure_topics(isolated)
    # The run's topics are brand new: a first send may bounce once while leadership settles (it is retried).
    logging.getLogger("aiokafka.producer.sender").setLevel(logging.ERROR)
    worker = start_worker(isolated, f"runs/{spec.name}/worker.log")
    done = 0

    def counted(_r: Record) -> None:
        nonlocal done
        done += 1
        if on_result is not None:
            on_result(done, len(tasks))

    try:
        results = await submit_and_wait(isolated, codec, tasks, spec.timeout_s, on_result=counted)
    finally:
        await asyncio.to_thread(stop, worker)
    rows = await _judge_rows(judge, tasks, results)
    meta = {"kind": "replay", "source": spec.source, "topic": settings.topic(spec.topic),
            "from": str(spec.start), "to": str(spec.end), "model": isolated.model,
            "pattern": spec.pattern, "prompts": list(spec.prompts), "judge_model": spec.judge_model,
            "eval_topic_prefix": isolated.topic_prefix, "records_read": len(records), "tasks": len(tasks),
            "missing": sum(1 for r in rows if r.status == "missing"), "folder": str(folder)}
    run = Run(spec.name, meta, rows)
    save_run(settings, run)
    return run


async def production_run(settings: Settings, codec: Codec, start: Bound, end: Bound, *,
                         judge: Judge | None = None, topic: str = TASKS) -> Run:
    """The original answers to the tasks of a range, read from agent.results and judged like a replay."""
    records = await read_range(settings, codec, settings.topic(topic), start, end)
    tasks = prepare_tasks(records, ReplaySpec(name="production", start=start, end=end))
    wanted = {t["task_id"] for t in tasks}
    results: dict[str, Record] = {}
    for r in await read_range(settings, codec, settings.topic(RESULTS), Bound("earliest"), Bound("now")):
        if r.event_type == "TaskResult" and r.record is not None:
            tid = r.record["task_id"]
            if tid in wanted and tid not in results:
                results[tid] = r.record
    rows = await _judge_rows(judge or make_judge(settings), tasks, results)
    meta = {"kind": "production", "topic": settings.topic(topic), "from": str(start), "to": str(end),
            "tasks": len(tasks), "missing": sum(1 for r in rows if r.status == "missing")}
    return Run(f"production:{start}..{end}", meta, rows)
