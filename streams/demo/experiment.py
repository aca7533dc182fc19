"""The demo's prompt experiment: two versions of a prompt, the judge scores them, the stream decides.

Runs against a worker that is already up (the demo's). v2 is made better through the simulated
judge (its version metadata `simulated_success`), so a promotion is expected within a few hundred
tasks; the report and the decision are printed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import click

from agents.experiment_report import build_report, render_text
from agents.prompt_registry import Experiment, PromptRegistry
from schemas import Codec
from streams.client import dead_letter_line, make_task, submit_and_wait
from streams.settings import Settings

__all__ = ["run_experiment_demo", "until_worker_has_experiment"]


def _under(result: dict[str, Any] | None, name: str) -> bool:
    """The task was answered under experiment `name` (the worker had read it)."""
    return result is not None and (result.get("metadata") or {}).get("experiment") == name


def until_worker_has_experiment(settings: Settings, codec: Codec, name: str, prompt: str,
                                timeout_s: float = 60.0) -> dict[str, Any] | None:
    """Send single tasks for `prompt` until one is answered under experiment `name`, i.e. the worker has
    read the experiment (workers cache the registry for a moment); that task is the experiment's first.
    The tasks answered before are not the experiment's: it never sees them. None if the time is up."""
    deadline = time.monotonic() + timeout_s
    n = 0
    while time.monotonic() < deadline:
        n += 1
        task = make_task("review change 0 of the parser", capability=prompt, task_id=f"{name}-first-{n}")
        result = asyncio.run(submit_and_wait(settings, codec, [task], max(1.0, deadline - time.monotonic()),
                                             on_dead=lambda tid, d: click.echo(dead_letter_line(tid, d))))
        if _under(result.get(task["task_id"]), name):
            return result[task["task_id"]]
        if task["task_id"] in result:
            time.sleep(0.2)
    return None


def run_experiment_demo(settings: Settings, codec: Codec, tasks: int = 300, timeout_s: float = 120.0) -> str | None:
    """Start an experiment, run tasks through it, wait for the outcomes or the decision, print the report.

    Returns why the demo's check failed (tasks without a result, outcomes not counted), None when it held."""
    run = uuid.uuid4().hex[:6]
    prompt, name = f"demo-review-{run}", f"demo-exp-{run}"
    registry = PromptRegistry(settings.postgres_dsn).migrate()
    try:
        registry.add_version(prompt, "You are the reviewer. Review: {{ task }}", author="demo",
                             metadata={"simulated_success": "0.45"})
        registry.add_version(prompt, "You are the reviewer. List defects first, then score: {{ task }}",
                             author="demo", metadata={"simulated_success": "0.75"})
        registry.start_experiment(Experiment(name, prompt, ["v1", "v2"], min_samples=50, alpha=0.05))
        click.echo(f"\n== prompt experiment {name}: {prompt} v1 vs v2 (the simulated judge favours v2)")
        started = time.monotonic()
        if until_worker_has_experiment(settings, codec, name, prompt) is None:
            return "the worker never answered a task under the experiment within 60 s"
        batch = [make_task(f"review change {i} of the parser", capability=prompt, task_id=f"{name}-{i:04d}")
                 for i in range(1, tasks)]
        results = asyncio.run(submit_and_wait(settings, codec, batch, timeout_s,
                                              on_dead=lambda tid, d: click.echo(dead_letter_line(tid, d))))
        done = 1 + sum(1 for r in results.values() if _under(r, name))  # the first one above, and these
        # The judge and the scoring processor follow the results: wait for the decision, or until every
        # outcome is counted (then the report is final without one), at most a minute.
        deadline = time.monotonic() + 60.0
        counted = 0
        while time.monotonic() < deadline:
            counted = sum(int(a["n"]) for a in registry.arm_stats(name).values())
            if registry.experiment(name).decision is not None or counted >= done:
                break
            time.sleep(0.5)
        exp = registry.experiment(name)
        click.echo(f"{done}/{tasks} experiment tasks done in {time.monotonic() - started:.1f}s; the experiment "
                   f"counted {counted} outcomes" + (" when it decided" if exp.decision else ""))
        click.echo(render_text(build_report(exp, registry.arm_stats(name), registry.history(name))))
        click.echo(f"  agentstream experiment report {name} --html report.html   (plots)")
        if done < tasks:
            return f"{tasks - done} experiment task(s) without a result under the experiment"
        if exp.decision is None and counted < done:
            return f"the experiment counted {counted} of {done} outcomes within 60 s"
        return None
    finally:
        registry.close()
