"""`agentstream worker`, `submit` and `tail`: run the pipeline, give it tasks, read its topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from schemas.events import CAPABILITIES, OPTIMIZATIONS, PATTERNS
from streams.settings import Settings

__all__ = ["submit", "tail", "worker"]



@click.command()
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


@click.command()
@click.argument("text", required=False)
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Submit every task of a JSON-lines file (one object per line, with \"description\").")
@click.option("--pattern", type=click.Choice(PATTERNS), default=None, help="Swarm pattern (default: fast).")
@click.option("--capability", default=None, help="Capability wanted, e.g. coding, research (default: coding).")
@click.option("--optimization", type=click.Choice(OPTIMIZATIONS), default=None, help="What to optimize for.")
@click.option("--budget", "budget_usd", type=float, default=None, help="Budget for this task in USD.")
@click.option("--tenant", default=None, help="Tenant the task is billed to (default: default).")
@click.option("--plan", default=None, help="Coordination plan with tools over MCP, e.g. simple, research, complex "
              "(docs/tools.md; default: none).")
@click.option("--wait/--no-wait", default=False, help="Wait for the results and print them.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait with --wait.")
@click.pass_obj
def submit(settings: Settings, text: str | None, file_: Path | None, wait: bool, timeout: float,
           **fields: Any) -> None:
    """Submit a task (TEXT) or a file of tasks to agent.tasks."""
    from schemas import EncodeError, default_codec
    from streams.client import make_task
    from streams.observability.runtime import start as observe

    if text is None and file_ is None:
        raise click.UsageError("give the task as TEXT, or --file FILE with one task per line")
    if text is not None and file_ is not None:
        raise click.UsageError("give either TEXT or --file, not both")
    tasks = _read_jsonl(file_) if file_ else [make_task(text, **fields)]
    if file_:  # options apply to every task of the file that does not set them itself
        tasks = [{**{k: v for k, v in fields.items() if v is not None}, **t} for t in tasks]
    _refuse_invalid(settings, tasks)
    observe(settings, "submit", serve=False)  # each task's trace starts here (AGENTSTREAM_OBSERVABILITY)
    try:
        results, dead = asyncio.run(_submit(settings, default_codec(), tasks, wait, timeout))
    except EncodeError as exc:
        raise click.ClickException(f"task does not fit the TaskRequested schema: {exc}") from exc
    if wait:
        from streams.client import dead_letter_line

        for tid in (t["task_id"] for t in tasks):
            r = results.get(tid)
            if r is not None:
                click.echo(f"{tid}  {r['status']}  {r['model']}  {r['output'][:100]!r}")
            elif tid in dead:
                click.echo(dead_letter_line(tid, dead[tid]))
            else:
                click.echo(f"{tid}  no result within {timeout:g} s (is a worker running? `agentstream worker`)")
        if len(results) < len(tasks):
            sys.exit(1)


def _refuse_invalid(settings: Settings, tasks: list[dict[str, Any]]) -> None:
    """Stop before anything is produced if a task has a field no worker would run (the worker's own
    rule, agents/validation.py): one line naming the task, the field, the value and what is allowed."""
    from agents.validation import describe, task_problems

    prompts = _registry_prompts(settings, {str(t.get("capability") or "") for t in tasks})
    for n, task in enumerate(tasks, 1):
        problems = task_problems(task, prompts)
        if problems:
            which = f"task {n} of {len(tasks)} ({task.get('task_id')})" if len(tasks) > 1 else "the task"
            raise click.ClickException(f"nothing submitted, {which} is invalid: {describe(problems)}")


def _registry_prompts(settings: Settings, capabilities: set[str]) -> set[str]:
    """Which of the capabilities that are not built-in name a prompt of the prompt registry."""
    wanted = capabilities - CAPABILITIES - {""}
    if not wanted or not settings.prompts_enabled:
        return set()
    import psycopg

    from agents.prompt_registry import PromptRegistry

    registry = PromptRegistry(settings.postgres_dsn)
    try:
        return {name for name in wanted if registry.versions(name)}
    except psycopg.errors.UndefinedTable:  # no registry yet: it holds no prompt
        return set()
    except psycopg.Error as exc:
        raise click.ClickException(f"capability {sorted(wanted)[0]!r} is not a built-in one, and the prompt registry "
                                   f"that might hold it cannot be read: {str(exc).strip()[:200]}") from exc
    finally:
        registry.close()


async def _submit(settings: Settings, codec: Any, tasks: list[dict[str, Any]], wait: bool,
                  timeout_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Send the tasks; with `wait`, their results and the dead letters of those that failed."""
    from streams.client import ResultWatcher, missing_topics, submit_tasks
    from streams.topics import client_topics

    tasks_topic, read_back = client_topics(settings)
    needed = [tasks_topic, *read_back] if wait else [tasks_topic]
    if missing := await missing_topics(settings, *needed):
        raise click.ClickException(f"topic {missing[0]!r} does not exist: `agentstream up` creates the topics "
                                   "(check AGENTSTREAM_TOPIC_PREFIX)")
    async with contextlib.AsyncExitStack() as stack:
        # Watching starts before the first task is sent (with --wait), so no result is missed.
        watcher = await stack.enter_async_context(ResultWatcher(settings, codec)) if wait else None
        with click.progressbar(length=len(tasks), label="submitting", file=sys.stderr,
                               hidden=len(tasks) < 2) as bar:
            ids = await submit_tasks(settings, codec, tasks, on_sent=lambda _t: bar.update(1))
        click.echo(f"submitted {len(ids)} task(s)" + ("" if len(ids) > 1 else f": {ids[0]}"), err=True)
        if watcher is None:
            return {}, {}
        return await watcher.wait(ids, timeout_s), watcher.dead


@click.command()
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
    from streams.cli.render import render_received

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


