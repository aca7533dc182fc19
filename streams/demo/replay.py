"""`agentstream replay demo`: record the demo's traffic, replay it with two prompt versions, compare them.

The demo's prompt (`demo-replay`) is registered once with two versions, v1 primary, and reused on later
runs, so the user's own prompts (named after capabilities: coding, review, ...) are never touched. The
demo's tasks ask for that prompt as their capability. They run fast or quality: the balanced pattern's
steps run under their roles' prompts (planning, coding, review), so a task prompt of another name is
not used there.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import click

from agents.prompt_registry import PromptRegistry
from schemas import default_codec
from streams.admin import ensure_topics
from streams.client import dead_letter_line, submit_and_wait
from streams.demo.run import load_sample_tasks
from streams.devstack import LocalStack
from streams.harness import running, start_worker
from streams.replay.compare import Comparison, compare_runs, render_text
from streams.replay.html import render_html
from streams.replay.range import parse_bound
from streams.replay.run import ReplaySpec, make_judge, production_run, run_replay
from streams.replay.store import Run
from streams.settings import Settings

__all__ = ["DEMO_PROMPT", "run_replay_demo"]

DEMO_PROMPT = "demo-replay"
_VERSIONS = (
    "You are the engineer on this task. Answer briefly: {{ task }}",
    "You are a senior engineer. Restate the task in one sentence, list the steps and the tests that prove "
    "them, name the risks (data loss, concurrency, performance), then answer: {{ task }}",
)


def _demo_prompt(settings: Settings) -> int:
    """Make sure the registry holds versions 1 and 2 of the demo prompt; return the primary version."""
    registry = PromptRegistry(settings.postgres_dsn).migrate()
    try:
        for template in _VERSIONS[len(registry.versions(DEMO_PROMPT)):]:
            registry.add_version(DEMO_PROMPT, template, author="demo")
        return registry.get(DEMO_PROMPT).version
    finally:
        registry.close()


def _demo_tasks(count: int, run_id: str) -> list[dict[str, Any]]:
    """The demo's sample tasks, each asking for the demo prompt (balanced ones run fast, see above)."""
    return [{**t, "capability": DEMO_PROMPT, "pattern": "quality" if t.get("pattern") == "quality" else "fast"}
            for t in load_sample_tasks(count, run_id)]


def self_check(production: Run, faithful: Comparison) -> str | None:
    """Why the replay pinned to production's prompt version did not reproduce production; None when it did.

    Each replayed step runs on the model production's step used, so every answer must be the same."""
    if production.meta["missing"]:
        return f"{production.meta['missing']} production task(s) have no result to compare with"
    if unpaired := sorted(set(faithful.only_a) | set(faithful.only_b)):
        return f"{len(unpaired)} task(s) not answered ok in both runs: {', '.join(unpaired[:3])}"
    differing = [p for p in faithful.pairs if not p.same_output]
    if not differing:
        return None
    p = differing[0]
    return (f"{len(differing)}/{len(faithful.pairs)} replayed answers differ from production's; e.g. {p.task_id}: "
            f"production {p.a.model} with prompt {p.a.prompt or 'built-in'}, replay {p.b.model} with prompt "
            f"{p.b.prompt or 'built-in'}")


def run_replay_demo(settings: Settings, count: int) -> int:
    """Returns the exit code: 0 when both replays answered every task and the replay of production's
    prompt version reproduced production's answers."""
    click.echo("== starting the local stack")
    for part in LocalStack(settings).up():
        click.echo(f"  {part.name:<9} {part.address:<28} {part.state}")
    asyncio.run(ensure_topics(settings))
    primary = _demo_prompt(settings)
    click.echo(f"== prompt {DEMO_PROMPT}: versions 1 and 2 in the registry, v{primary} primary "
               f"(agentstream prompt diff {DEMO_PROMPT} 1 2)")
    codec, run_id = default_codec(), uuid.uuid4().hex[:6]
    start = datetime.now(UTC).isoformat()
    click.echo(f"== recording {count} demo tasks on {settings.topic('agent.tasks')} "
               f"(model {settings.model or 'routed by optimization'}, prompt {DEMO_PROMPT} v{primary})")
    with running(start_worker(settings, "demo-worker.log")):
        answered = len(asyncio.run(submit_and_wait(settings, codec, _demo_tasks(count, run_id), 180,
                                                   on_dead=lambda tid, d: click.echo(dead_letter_line(tid, d)))))
    time.sleep(0.01)
    end = datetime.now(UTC).isoformat()
    click.echo(f"   {answered}/{count} answered; range [{start} .. {end})")
    runs = []
    for version in (1, 2):
        name, pin = f"demo-v{version}-{run_id}", f"{DEMO_PROMPT}={version}"
        click.echo(f"== replaying the range as run {name} with --prompt {pin} (own topics and worker; each step "
                   "on the model it used in production)")
        spec = ReplaySpec(name=name, start=parse_bound(start), end=parse_bound(end), prompts=(pin,))
        runs.append(asyncio.run(run_replay(settings, codec, spec)))
    production = asyncio.run(production_run(settings, codec, parse_bound(start), parse_bound(end),
                                            judge=make_judge(settings)))
    click.echo(f"\n== compare {runs[0].name} (A, prompt v1) with {runs[1].name} (B, prompt v2)\n")
    comparison = compare_runs(*runs)
    for line in render_text(comparison, rows=8, diffs=1):
        click.echo(line)
    report = settings.data_dir / f"replay-{run_id}.html"
    report.write_text(render_html(comparison))
    failed = [f"{r.name}: {r.meta['missing']} without a result, {r.meta.get('dead_lettered', 0)} dead-lettered"
              for r in runs if r.meta["missing"] or r.meta.get("dead_lettered")]
    if primary in (1, 2):  # the replay pinned to production's version gives production's answers
        faithful = compare_runs(production, runs[primary - 1])
        click.echo(f"\nproduction (v{primary}) vs {faithful.name_b}: {len(faithful.pairs) - faithful.changed}/"
                   f"{len(faithful.pairs)} tasks with the same output")
        if (why := self_check(production, faithful)) is not None:
            failed.append(f"the replay of production's prompt version did not reproduce it: {why}")
    click.echo(f"\nHTML report: {report}\nAgain by hand:\n  agentstream replay compare {runs[0].name} {runs[1].name}"
               f" --html report.html\n  agentstream replay compare 'production:{start}..{end}' {runs[1].name}\n"
               f"  agentstream replay --from '{start}' --to '{end}' --model simulator/fast-1 --name my-model-run")
    for why in failed:
        click.echo(f"SELF-CHECK FAILED: {why}", err=True)
    return 1 if failed else 0
