"""The `agentstream` command line. Settings are built here, once, and passed down."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from streams.settings import Settings

BENCH_SECTIONS = ("pipeline", "memory", "agents")  # what `bench --only` can pick

__all__ = ["main"]

PATTERNS = ("fast", "balanced", "quality")
OPTIMIZATIONS = ("cost", "quality", "speed", "balanced")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise click.ClickException(f"bad setting in the environment:\n{exc}") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """agentstream: a Kafka-native runtime for LLM agent work.

    Every setting is an environment variable (see `agentstream settings`); with none set, the
    embedded local stack on 127.0.0.1 is used (`agentstream up`).
    """
    from streams.logs import configure_logging

    ctx.obj = _settings()
    configure_logging(ctx.obj)


def _settings_with(**overrides: Any) -> Settings:
    """The settings from the environment with some variables set differently (validators run again)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise click.ClickException(f"bad setting:\n{exc}") from exc


def _print_parts(parts: list[Any]) -> None:
    for part in parts:
        click.echo(f"{part.name:<9} {part.address:<28} {part.state}")


def _stack_call(settings: Settings, action: str, with_s3: bool = False) -> list[Any]:
    from streams.stack import LocalStack, StackError

    try:
        return getattr(LocalStack(settings, with_s3=with_s3), action)()
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.option("--with-s3", is_flag=True, help="Also start a local S3-API server (moto) for the boto3 archive path.")
@click.option("--brokers", type=click.IntRange(1, 9), default=None,
              help="Kafka nodes (AGENTSTREAM_KAFKA_BROKERS); 3 gives replication 3 with min.insync.replicas 2.")
@click.pass_obj
def up(settings: Settings, with_s3: bool, brokers: int | None) -> None:
    """Start the local stack (Kafka, PostgreSQL, Redis) on 127.0.0.1 and create the topics.

    Parts whose URL is set in the environment are used as they are. A second `up` does nothing.
    """
    from streams.admin import ensure_topics
    from streams.stack import LocalStack

    if brokers is not None and brokers != settings.kafka_brokers:
        # Built again so the settings that follow the node count (replication factor) follow it too.
        settings = _settings_with(AGENTSTREAM_KAFKA_BROKERS=brokers)
    running = LocalStack(settings).settings.kafka_brokers  # a bigger cluster already up in this folder
    if running != settings.kafka_brokers:
        settings = _settings_with(AGENTSTREAM_KAFKA_BROKERS=running)
    _print_parts(_stack_call(settings, "up", with_s3))
    created = asyncio.run(ensure_topics(settings))
    click.echo(f"topics    {len(created)} created" if created else "topics    all present")
    if settings.kafka_brokers > 1 and settings.kafka_bootstrap_servers is None:
        nodes = settings.kafka_brokers
        click.echo(f"cluster   {nodes} Kafka nodes, topics with replication {settings.replication_factor}; "
                   f"other commands need AGENTSTREAM_KAFKA_BROKERS={nodes} too")


@cli.command()
@click.pass_obj
def down(settings: Settings) -> None:
    """Stop the parts of the local stack that `up` started (data stays in the data folder)."""
    _print_parts(_stack_call(settings, "down"))


@cli.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """One line per part of the stack: name, address, state."""
    _print_parts(_stack_call(settings, "status"))


@cli.command()
@click.pass_obj
def settings(settings: Settings) -> None:
    """Print the settings in force (secrets masked)."""
    for name, value in settings.masked().items():
        click.echo(f"{name:<24} {value}")


@cli.command()
@click.option("--concurrency", type=int, default=None, help="Tasks in flight at once (AGENTSTREAM_WORKER_CONCURRENCY).")
@click.pass_obj
def worker(settings: Settings, concurrency: int | None) -> None:
    """Run a stream worker: consume agent.tasks, run agents, emit outputs and results, until Ctrl-C.

    Start several (same AGENTSTREAM_APP_ID) to share the partitions as one consumer group.
    """
    from streams.worker import run_worker

    if concurrency is not None:
        settings = settings.model_copy(update={"worker_concurrency": concurrency})
    run_worker(settings)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from streams.client import make_task

    tasks = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            tasks.append(make_task(fields.pop("description"), **fields))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
            raise click.ClickException(f"{path}:{n}: not a task ({exc!r}); each line is a JSON object "
                                       'with at least "description"') from exc
    return tasks


@cli.command()
@click.argument("text", required=False)
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Submit every task of a JSON-lines file (one object per line, with \"description\").")
@click.option("--pattern", type=click.Choice(PATTERNS), default=None, help="Swarm pattern (default: fast).")
@click.option("--capability", default=None, help="Capability wanted, e.g. coding, research (default: coding).")
@click.option("--optimization", type=click.Choice(OPTIMIZATIONS), default=None, help="What to optimize for.")
@click.option("--budget", "budget_usd", type=float, default=None, help="Budget for this task in USD.")
@click.option("--tenant", default=None, help="Tenant the task is billed to (default: default).")
@click.option("--wait/--no-wait", default=False, help="Wait for the results and print them.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait with --wait.")
@click.pass_obj
def submit(settings: Settings, text: str | None, file_: Path | None, wait: bool, timeout: float,
           **fields: Any) -> None:
    """Submit a task (TEXT) or a file of tasks to agent.tasks."""
    from schemas import EncodeError, default_codec
    from streams.client import make_task

    if (text is None) == (file_ is None):
        raise click.UsageError("give either TEXT or --file, not both")
    tasks = _read_jsonl(file_) if file_ else [make_task(text, **fields)]
    if file_:  # options apply to every task of the file that does not set them itself
        tasks = [{**{k: v for k, v in fields.items() if v is not None}, **t} for t in tasks]
    try:
        results = asyncio.run(_submit(settings, default_codec(), tasks, wait, timeout))
    except EncodeError as exc:
        raise click.ClickException(f"task does not fit the TaskRequested schema: {exc}") from exc
    if wait:
        for tid in (t["task_id"] for t in tasks):
            r = results.get(tid)
            click.echo(f"{tid}  " + (f"{r['status']}  {r['model']}  {r['output'][:100]!r}" if r else "no result yet"))
        if len(results) < len(tasks):
            sys.exit(1)


async def _submit(settings: Settings, codec: Any, tasks: list[dict[str, Any]], wait: bool,
                  timeout_s: float) -> dict[str, Any]:
    from streams.client import ResultWatcher, submit_tasks

    watcher = ResultWatcher(settings, codec)
    if wait:
        await watcher.start()
    try:
        with click.progressbar(length=len(tasks), label="submitting", file=sys.stderr,
                               hidden=len(tasks) < 2) as bar:
            ids = await submit_tasks(settings, codec, tasks, on_sent=lambda _t: bar.update(1))
        click.echo(f"submitted {len(ids)} task(s)" + ("" if len(ids) > 1 else f": {ids[0]}"), err=True)
        return await watcher.wait(ids, timeout_s) if wait else {}
    finally:
        if wait:
            await watcher.stop()


@cli.command()
@click.argument("topic")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a readable line.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not at the end.")
@click.option("--count", type=int, default=None, help="Stop after N records.")
@click.option("--idle-timeout", type=float, default=None, help="Stop after this many seconds with no record.")
@click.pass_obj
def tail(settings: Settings, topic: str, as_json: bool, from_beginning: bool, count: int | None,
         idle_timeout: float | None) -> None:
    """Print the decoded records of TOPIC (e.g. agent.results) as they arrive.

    TOPIC is the logical name; the AGENTSTREAM_TOPIC_PREFIX, if any, is added.
    """
    from streams.render import render_received

    try:
        asyncio.run(_tail(settings, settings.topic(topic), as_json, from_beginning, count, idle_timeout,
                          render_received))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        pass


async def _tail(settings: Settings, topic: str, as_json: bool, from_beginning: bool, count: int | None,
                idle_timeout: float | None, render: Any) -> None:
    from schemas import default_codec
    from streams.client import read_topic

    async for received in read_topic(settings, default_codec(), topic, from_beginning=from_beginning,
                                     count=count, idle_timeout_s=idle_timeout):
        click.echo(render(received, as_json))


@cli.command()
@click.option("--tasks", "count", type=int, default=20, show_default=True, help="How many sample tasks.")
@click.option("--timeout", type=float, default=180.0, show_default=True, help="Seconds to wait for results.")
@click.pass_obj
def demo(settings: Settings, count: int, timeout: float) -> None:
    """Start the stack and a worker, run sample tasks, and print what happened."""
    from streams.demo import run_demo

    sys.exit(run_demo(settings, count, timeout))


@cli.command()
@click.option("--events", type=int, default=50_000, show_default=True, help="Events for the raw aiokafka baseline.")
@click.option("--tasks", type=int, default=3_000, show_default=True, help="Tasks through the pipeline.")
@click.option("--agent-calls", type=int, default=3_000, show_default=True,
              help="Calls for the agent figure (a), litellm's own call rate.")
@click.option("--agent-tasks", type=int, default=8_000, show_default=True,
              help="Tasks per worker for the agent figures (b) and (d), at 2 s model latency.")
@click.option("--only", "sections", multiple=True, type=click.Choice(BENCH_SECTIONS),
              help="Run only this section (repeatable); default: all. The raw baseline always runs.")
@click.option("--two-workers/--no-two-workers", default=True, show_default=True,
              help="Agent figure (d): two workers in one consumer group.")
@click.pass_obj
def bench(settings: Settings, events: int, tasks: int, agent_calls: int, agent_tasks: int,
          sections: tuple[str, ...], two_workers: bool) -> None:
    """Measure the raw aiokafka baseline and the pipeline end to end on the running stack, then the
    memory tiers and the agent swarms (litellm's call rate, one worker at 2 s latency, the latency
    the pipeline adds, two workers). Prints ratios against the raw baseline of the same run."""
    from streams.bench import run_bench

    run_bench(settings, events, tasks, agent_calls, agent_tasks, set(sections or BENCH_SECTIONS), two_workers)


# Commands of the other areas live beside their code; attached here, after `cli` exists.
from streams.cli_memory import memory, sinks  # noqa: E402
from streams.cli_prompts import experiment, prompt  # noqa: E402
from streams.code.cli import docs, git_hook, git_watch  # noqa: E402
from streams.replay.cli import replay  # noqa: E402

for _command in (sinks, memory, replay, git_watch, git_hook, docs, prompt, experiment):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="agentstream")
