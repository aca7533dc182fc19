"""The demo's prompt experiment: two versions of a prompt, the judge scores them, the stream decides.

Runs against a worker that is already up (the demo's). v2 is made better through the simulated
judge (its version metadata `simulated_success`), so a promotion is expected within a few hundred
tasks; the report and the decision are printed.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import click

from agents.experiment_report import build_report, render_text
from agents.prompt_registry import Experiment, PromptRegistry
from schemas import Codec
from streams.client import make_task, submit_and_wait
from streams.settings import Settings

__all__ = ["run_experiment_demo"]


def run_experiment_demo(settings: Settings, codec: Codec, tasks: int = 300, timeout_s: float = 120.0) -> bool:
    """Start an experiment, run tasks through it, wait for the decision, print the report. True if decided."""
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
        batch = [make_task(f"review change {i} of the parser", capability=prompt, task_id=f"{name}-{i:04d}")
                 for i in range(tasks)]
        started = time.monotonic()
        done = len(asyncio.run(submit_and_wait(settings, codec, batch, timeout_s)))
        # The judge and the scoring processor follow the results: wait for the decision, or until every
        # outcome is counted (then the report is final without one), at most a minute.
        deadline = time.monotonic() + 60.0
        while registry.experiment(name).decision is None and time.monotonic() < deadline:
            if sum(a["n"] for a in registry.arm_stats(name).values()) >= done:
                break
            time.sleep(0.5)
        exp = registry.experiment(name)
        click.echo(f"{done}/{tasks} experiment tasks done in {time.monotonic() - started:.1f}s")
        click.echo(render_text(build_report(exp, registry.arm_stats(name), registry.history(name))))
        click.echo(f"  agentstream experiment report {name} --html report.html   (plots)")
        return exp.decision is not None
    finally:
        registry.close()
