"""`agentstream replay ...` and `agentstream replay compare A B`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from schemas.events import PATTERNS
from streams.settings import Settings

__all__ = ["replay"]



def _bound(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    from streams.replay.range import parse_bound

    if value is None:
        return None
    try:
        return parse_bound(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


class _Bar:
    """A click progress bar fed with (done, total) callbacks."""

    def __init__(self, label: str) -> None:
        self.label, self.bar, self.last = label, None, 0

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=max(total, 1), label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.last)
        self.last = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@click.group(invoke_without_command=True)
@click.option("--topic", default="agent.tasks", show_default=True, help="Logical topic to replay (TaskRequested).")
@click.option("--from", "start", callback=_bound, help="Start (inclusive): OFFSET on every partition, an ISO "
              "timestamp (UTC if no zone), or 'earliest'.")
@click.option("--to", "end", callback=_bound, default="now", show_default=True,
              help="End (exclusive): OFFSET, ISO timestamp, or 'now' (the end when the replay starts).")
@click.option("--source", type=click.Choice(["kafka", "archive"]), default="kafka", show_default=True,
              help="Where to read the range: Kafka, or the L4 archive written by `agentstream sinks` "
              "(local folder, or S3 when S3_ENDPOINT_URL is set). Same bounds, same records.")
@click.option("--model", default=None, help="Model for the replayed agents (default: AGENTSTREAM_MODEL).")
@click.option("--pattern", type=click.Choice(PATTERNS), default=None, help="Pattern set on every replayed task.")
@click.option("--prompt", "prompts", multiple=True, metavar="NAME=VERSION",
              help="Prompt version to use, e.g. review=v2 (NAME is the prompt named after the task's "
              "capability): the eval worker renders that registry version, outside any experiment.")
@click.option("--fresh-memory", is_flag=True,
              help="Give the agents what a memory search finds today, not the memories production recalled "
              "for each task (their ids are on its AgentOutputs).")
@click.option("--judge-model", default="simulator/quality-1", show_default=True, help="Model the judge calls.")
@click.option("--name", default=None, help="Name of the evaluation run (its topics: <prefix>eval-NAME.*).")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for results.")
@click.option("--live-tools", is_flag=True, help="Call the tools again (against a copy of the workspace) instead "
              "of using the results the tool-call ledger recorded; nothing is written to the ledger.")
@click.pass_context
def replay(ctx: click.Context, **opts: Any) -> None:
    """Re-run a recorded range of agent.tasks in an isolated evaluation run, judge it, and keep it.

    The run has its own topics (prefix eval-NAME.), consumer group and worker process, so production
    topics, results and statistics are not touched. Results go to <data_dir>/runs/NAME/.
    Then: `agentstream replay compare RUN_A RUN_B` (a run may also be production:FROM..TO).
    """
    if ctx.invoked_subcommand is not None:
        return
    if opts["start"] is None or not opts["name"]:
        raise click.UsageError("replay needs --from and --name (or a subcommand: compare)")
    if any("=" not in p for p in opts["prompts"]):
        raise click.BadParameter("expected NAME=VERSION", param_hint="--prompt")
    from schemas import default_codec
    from streams.replay.run import ReplaySpec, run_replay

    settings: Settings = ctx.obj
    spec = ReplaySpec(name=opts["name"], start=opts["start"], end=opts["end"], topic=opts["topic"],
                      source=opts["source"], model=opts["model"], pattern=opts["pattern"],
                      prompts=tuple(opts["prompts"]), judge_model=opts["judge_model"], timeout_s=opts["timeout"],
                      fresh_memory=opts["fresh_memory"], live_tools=opts["live_tools"])
    reading, running = _Bar("reading "), _Bar("replaying")
    try:
        run = asyncio.run(run_replay(settings, default_codec(), spec, on_read=reading, on_result=running))
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        reading.close()
        running.close()
    meta = run.meta
    for row in run.rows:
        if row.status == "dead-lettered":
            click.echo(f"{row.task_id}  dead-lettered at {row.output[:300]}")
    click.echo(f"run {run.name}: {meta['tasks']} tasks from {meta['records_read']} records "
               f"[{meta['from']} .. {meta['to']}), model {meta['model']}, {meta['dead_lettered']} dead-lettered, "
               f"{meta['missing']} without a result within {opts['timeout']:g} s")
    click.echo(f"kept in {meta['folder']}")
    if meta["missing"] or meta["dead_lettered"]:
        sys.exit(1)


def _production(settings: Settings, ref: str, judge_model: str) -> Any:
    from schemas import default_codec
    from streams.replay.range import parse_bound
    from streams.replay.run import make_judge, production_run

    start, sep, end = ref.removeprefix("production:").partition("..")
    if not sep:
        raise ValueError(f"expected production:FROM..TO, got {ref!r}")
    return asyncio.run(production_run(settings, default_codec(), parse_bound(start), parse_bound(end),
                                      judge=make_judge(settings, judge_model)))


def _load_pair(settings: Settings, refs: tuple[str, str]) -> list[Any]:
    """Saved runs first, so original (production) answers are judged by the saved runs' judge."""
    from streams.replay.store import load_run

    stored = {ref: load_run(settings, ref) for ref in refs if not ref.startswith("production:")}
    judge_model = next((r.meta["judge_model"] for r in stored.values() if r.meta.get("judge_model")),
                       "simulator/quality-1")
    return [stored[ref] if ref in stored else _production(settings, ref, judge_model) for ref in refs]


@replay.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a self-contained HTML report with plots.")
@click.option("--rows", type=int, default=20, show_default=True, help="Per-task rows to print.")
@click.option("--diffs", type=int, default=2, show_default=True, help="Output diffs to print.")
@click.pass_obj
def compare(settings: Settings, run_a: str, run_b: str, html_path: Path | None, rows: int, diffs: int) -> None:
    """Compare RUN_A and RUN_B task by task, with paired differences and 95% intervals (B - A).

    A run is a replay name or production:FROM..TO (the original results of that range of agent.tasks,
    judged by the same judge as the other run).
    """
    from streams.replay.compare import compare_runs, render_text
    from streams.replay.html import render_html

    try:
        loaded = _load_pair(settings, (run_a, run_b))
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    comparison = compare_runs(*loaded)
    for line in render_text(comparison, rows=rows, diffs=diffs):
        click.echo(line)
    if html_path is not None:
        html_path.write_text(render_html(comparison))
        click.echo(f"\nHTML report: {html_path}")


@replay.command("demo")
@click.option("--tasks", "count", type=int, default=20, show_default=True, help="How many demo tasks to record.")
@click.pass_obj
def demo(settings: Settings, count: int) -> None:
    """Record the demo's traffic, replay it with prompt versions 1 and 2, and compare the runs (stack stays up)."""
    from streams.demo.replay import run_replay_demo

    sys.exit(run_replay_demo(settings, count))
