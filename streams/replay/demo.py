"""`agentstream replay demo`: record the demo's traffic, replay it with two models, compare them."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import click

from schemas import Codec, default_codec
from streams.admin import ensure_topics
from streams.client import ResultWatcher, submit_tasks
from streams.demo import load_sample_tasks, start_worker, stop_worker
from streams.replay.compare import compare_runs, render_text
from streams.replay.html import render_html
from streams.replay.range import parse_bound
from streams.replay.run import ReplaySpec, make_judge, production_run, run_replay
from streams.settings import Settings
from streams.stack import LocalStack

__all__ = ["run_replay_demo"]


async def _record(settings: Settings, codec: Codec, count: int, run_id: str) -> int:
    watcher = ResultWatcher(settings, codec)
    await watcher.start()
    try:
        ids = await submit_tasks(settings, codec, load_sample_tasks(count, run_id))
        return len(await watcher.wait(ids, 180))
    finally:
        await watcher.stop()


def run_replay_demo(settings: Settings, count: int) -> int:
    """Returns the exit code: 0 when both replays answered every task."""
    # Production pins one model, so the comparison is model against model (routing is issue 3's default).
    settings = settings.model_copy(update={"model": settings.model or "simulator/balanced-1"})
    click.echo("== starting the local stack")
    for part in LocalStack(settings).up():
        click.echo(f"  {part.name:<9} {part.address:<28} {part.state}")
    asyncio.run(ensure_topics(settings))
    codec, run_id = default_codec(), uuid.uuid4().hex[:6]
    start = datetime.now(UTC).isoformat()
    click.echo(f"== recording {count} demo tasks on {settings.topic('agent.tasks')} (model {settings.model})")
    worker = start_worker(settings, "demo-worker.log")
    try:
        answered = asyncio.run(_record(settings, codec, count, run_id))
    finally:
        stop_worker(worker)
    time.sleep(0.01)
    end = datetime.now(UTC).isoformat()
    click.echo(f"   {answered}/{count} answered; range [{start} .. {end})")
    runs = []
    for model in ("simulator/fast-1", "simulator/quality-1"):
        name = f"demo-{model.split('/')[-1]}-{run_id}"
        click.echo(f"== replaying the range as run {name} with --model {model} (own topics and worker)")
        spec = ReplaySpec(name=name, start=parse_bound(start), end=parse_bound(end), model=model)
        runs.append(asyncio.run(run_replay(settings, codec, spec)))
    production = asyncio.run(production_run(settings, codec, parse_bound(start), parse_bound(end),
                                            judge=make_judge(settings)))
    click.echo(f"\n== compare {runs[0].name} (A) with {runs[1].name} (B)\n")
    comparison = compare_runs(*runs)
    for line in render_text(comparison, rows=8, diffs=1):
        click.echo(line)
    report = settings.data_dir / f"replay-{run_id}.html"
    report.write_text(render_html(comparison))
    versus = compare_runs(production, runs[0])
    score = versus.intervals[0]
    click.echo(f"\nproduction ({settings.model}) vs {runs[0].name}: score B - A {score.mean_diff:+.3f} "
               f"[{score.low:+.3f}, {score.high:+.3f}] over {score.n} tasks")
    click.echo(f"\nHTML report: {report}\nAgain by hand:\n  agentstream replay compare {runs[0].name} {runs[1].name}"
               f" --html report.html\n  agentstream replay compare 'production:{start}..{end}' {runs[0].name}")
    return 0 if all(r.meta["missing"] == 0 for r in runs) else 1
