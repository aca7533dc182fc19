"""An evaluation run: re-run a recorded range of agent.tasks in isolation, judge it, keep it as a Run.

Isolation is the project's own: the run gets a topic prefix (`<prefix>eval-<name>.`) and a consumer
group of its own, and its own worker process (whose AGENTSTREAM_MODEL is the model override). Nothing
is written to a production topic: the range is only read, without a consumer group.

Without a model override a replay is faithful to production: each step of a replayed task runs on the
model its recorded AgentOutput answered with (whatever routed or pinned it then), not on the routing or
the AGENTSTREAM_MODEL of the machine that replays. Each task is given the memories production gave it
(their ids are on its AgentOutputs), fetched by id, not what a search of the tiers finds today (memories
stored since would change the prompt); `--fresh-memory` searches today's instead.
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
from agents.runner import RECORDED_MEMORIES
from agents.simulator import install_simulator
from agents.swarm import RECORDED_MODEL
from schemas import Codec
from schemas.events import Record
from streams.admin import ensure_topics
from streams.client import Received, submit_and_wait
from streams.harness import start_worker, stop
from streams.replay.range import Bound, read_range
from streams.replay.store import Run, TaskRow, run_dir, save_run
from streams.settings import Settings
from streams.tools.runtime import replay_tool_settings
from streams.topics import OUTPUTS, RESULTS, TASKS

__all__ = ["ReplaySpec", "checked_prompt_pins", "eval_settings", "make_judge", "prepare_tasks", "production_run",
           "read_source", "recorded_calls", "run_replay"]

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
    fresh_memory: bool = False  # search today's memories instead of recalling the ones production recalled
    live_tools: bool = False  # call the tools again (on a workspace copy) rather than use the recorded results


def eval_settings(settings: Settings, name: str, model: str | None = None) -> Settings:
    """The settings of an evaluation run: own topic prefix, own consumer group, the model override (none:
    the steps run on their recorded models, so the replayer's AGENTSTREAM_MODEL does not apply).

    Its worker recalls from production's memory tiers (`memory_scope`): the memories production recalled,
    by id, or with `--fresh-memory` whatever a search finds there today.

    The prompt judge is off: the registry (experiment statistics, decisions, primaries) is production's and
    has no topic prefix, so outputs of a replay must never become prompt outcomes.
    """
    scope = settings.memory_scope if settings.memory_scope is not None else settings.topic_prefix
    return settings.isolated(f"eval-{name}", model=model, judge_enabled=False, memory_scope=scope)


def checked_prompt_pins(settings: Settings, pins: tuple[str, ...]) -> tuple[str, ...]:
    """`NAME=VERSION` pins (VERSION `2` or `v2`) as `NAME=2`, each checked against the registry before any
    work starts: a version the registry does not have is a ValueError naming the versions it has."""
    if not pins:
        return ()
    from agents.prompt_registry import PromptRegistry, RegistryError, variant_version

    registry = PromptRegistry(settings.postgres_dsn).migrate()
    checked = []
    try:
        for pin in pins:
            name, sep, version = pin.partition("=")
            if not sep or not name:
                raise ValueError(f"--prompt {pin!r}: expected NAME=VERSION, e.g. review=2")
            try:
                number = variant_version(version)
            except RegistryError as exc:
                raise ValueError(f"--prompt {pin!r}: {version!r} is not a version (write 2 or v2)") from exc
            have = [v.version for v in registry.versions(name)]
            if number not in have:
                known = f"it has versions {', '.join(map(str, have))}" if have else "no such prompt"
                raise ValueError(f"--prompt {pin!r}: prompt {name!r} has no version {number} in the registry "
                                 f"({known}; `agentstream prompt list`)")
            checked.append(f"{name}={number}")
    finally:
        registry.close()
    return tuple(checked)


def make_judge(settings: Settings, model: str = DEFAULT_JUDGE_MODEL) -> Judge:
    """Replay's judge: the model judge over the configured models and agents, `model` tried first (so two
    runs are graded by the same model), with its own budget ledger; the offline simulator is registered
    so `simulator/*` models answer. A model missing from the table is a ValueError."""
    from streams.worker import runner_config

    install_simulator(0.0, 0.0)
    return build_judge(dataclasses.replace(runner_config(settings), pinned_model=model))


def prepare_tasks(records: list[Received], spec: ReplaySpec, models: dict[str, dict[int, str]] | None = None,
                  memories: dict[str, str] | None = None) -> list[Record]:
    """The TaskRequested records of the range, redacted, with the overrides applied; one per task_id, first wins.

    Redacted here, so neither the replayed worker, the judge nor the run's files see a secret of the record.
    `models` (task id -> step -> model, see `recorded_calls`) pins each step to its recorded model; `memories`
    (task id -> the memory ids its outputs carry) pins what the task recalls, unless `spec.fresh_memory`."""
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
        if models and not spec.model and spec.pattern in (None, task.get("pattern")):
            meta.update({f"{RECORDED_MODEL}{step}": model for step, model in models.get(task["task_id"], {}).items()})
        if memories and not spec.fresh_memory and task["task_id"] in memories:
            meta[RECORDED_MEMORIES] = memories[task["task_id"]]
        if spec.pattern:
            task["pattern"] = spec.pattern
        tasks[task["task_id"]] = task
    return list(tasks.values())


async def _judge_rows(judge: Judge, tasks: list[Record], results: dict[str, Record],
                      dead: dict[str, Record] | None = None) -> list[TaskRow]:
    """One judged row per task; a task without a result is `dead-lettered` (its stage and error as the
    output) or `missing`."""
    rows = []
    for task in tasks:
        result = results.get(task["task_id"])
        if result is None:
            letter = (dead or {}).get(task["task_id"])
            why = f"stage {letter['stage']}: {letter['error']}" if letter else ""
            rows.append(TaskRow(task["task_id"], task["description"], "dead-lettered" if letter else "missing", why,
                                "", 0.0, 0.0, 0.0))
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


async def recorded_calls(settings: Settings, codec: Codec, spec: ReplaySpec,
                         task_ids: set[str]) -> tuple[dict[str, dict[int, str]], dict[str, str]]:
    """From the AgentOutputs production recorded (agent.outputs, read from the same source as the range):
    task id -> step -> the model that step answered with (a step's first answer wins), and task id -> the
    memory ids its steps were given ("" when none: a worker without memory recalled nothing)."""
    every = dataclasses.replace(spec, topic=OUTPUTS, start=Bound("earliest"), end=Bound("now"))
    models: dict[str, dict[int, str]] = {}
    memories: dict[str, str] = {}
    for r in await read_source(settings, codec, every):
        out = r.record
        if r.event_type != "AgentOutput" or out is None or out["task_id"] not in task_ids:
            continue
        memories.setdefault(out["task_id"], str((out.get("metadata") or {}).get("memory_ids", "")))
        if out.get("model") and out.get("status") == "ok":
            models.setdefault(out["task_id"], {}).setdefault(int(out["step"]), out["model"])
    return models, memories


async def run_replay(settings: Settings, codec: Codec, spec: ReplaySpec, *, judge: Judge | None = None,
                     on_read: Progress | None = None, on_result: Progress | None = None) -> Run:
    """Read the range, run it on an isolated worker, judge every answer, save and return the run."""
    folder = run_dir(settings, spec.name)
    spec = dataclasses.replace(spec, prompts=checked_prompt_pins(settings, spec.prompts))  # before any work
    judge = judge or make_judge(settings, spec.judge_model)  # a judge model not in the table fails before the run
    records = await read_source(settings, codec, spec, on_read)
    tasks = prepare_tasks(records, spec)
    if tasks and (not spec.model or not spec.fresh_memory):  # faithful: production's models and memories
        models, memories = await recorded_calls(settings, codec, spec, {t["task_id"] for t in tasks})
        tasks = prepare_tasks(records, spec, None if spec.model else models, memories)
    if not tasks:
        raise ValueError(f"no TaskRequested records in [{spec.start} .. {spec.end}) of {settings.topic(spec.topic)} "
                         f"({len(records)} records read): nothing to replay")
    isolated = replay_tool_settings(eval_settings(settings, spec.name, spec.model), spec.live_tools, folder)
    await ensure_topics(isolated)
    # The run's topics are brand new: a first send may bounce once while leadership settles (it is retried).
    logging.getLogger("aiokafka.producer.sender").setLevel(logging.ERROR)
    worker = start_worker(isolated, f"runs/{spec.name}/worker.log")
    done = 0
    dead: dict[str, Record] = {}

    def counted(_r: Record) -> None:
        nonlocal done
        done += 1
        if on_result is not None:
            on_result(done, len(tasks))

    def dead_lettered(task_id: str, letter: Record) -> None:
        dead[task_id] = letter
        counted(letter)

    try:
        results = await submit_and_wait(isolated, codec, tasks, spec.timeout_s, on_result=counted,
                                        on_dead=dead_lettered)
    finally:
        await asyncio.to_thread(stop, worker)
    rows = await _judge_rows(judge, tasks, results, dead)
    meta = {"kind": "replay", "source": spec.source, "topic": settings.topic(spec.topic),
            "from": str(spec.start), "to": str(spec.end), "model": isolated.model or "as recorded",
            "pattern": spec.pattern, "prompts": list(spec.prompts), "judge_model": spec.judge_model,
            "memory": "searched today" if spec.fresh_memory else "as recalled in production",
            "tools": "live (workspace copy)" if spec.live_tools else "recorded",
            "eval_topic_prefix": isolated.topic_prefix, "records_read": len(records), "tasks": len(tasks),
            "missing": sum(1 for r in rows if r.status == "missing"),
            "dead_lettered": sum(1 for r in rows if r.status == "dead-lettered"), "folder": str(folder)}
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
