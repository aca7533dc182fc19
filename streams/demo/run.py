"""`agentstream demo`: the main job on a sample workload, start to finish, and a summary of it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from importlib import resources
from typing import Any

import click

from schemas import Codec, default_codec
from streams import kafka
from streams.admin import ensure_topics
from streams.client import ResultWatcher, dead_letter_line, make_task, read_topic, submit_tasks
from streams.demo.swarm import pattern_summary
from streams.devstack import LocalStack
from streams.harness import running, start_sinks, start_worker
from streams.observability.runtime import start as observe
from streams.settings import Settings
from streams.topics import DEADLETTERS, TASKS

__all__ = ["load_sample_tasks", "run_demo"]


def load_sample_tasks(count: int, run_id: str) -> list[dict[str, Any]]:
    """`count` tasks cycled from the packaged sample file, with ids unique to this run."""
    lines = resources.files("streams").joinpath("data/sample_tasks.jsonl").read_text().splitlines()
    samples = [json.loads(line) for line in lines if line.strip()]
    tasks = []
    for n in range(count):
        fields = dict(samples[n % len(samples)])
        tasks.append(make_task(fields.pop("description"), task_id=f"demo-{run_id}-{n + 1:03d}", **fields))
    return tasks


async def _run(settings: Settings, codec: Codec, tasks: list[dict[str, Any]],
               timeout_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The results of the tasks, and the dead letters of those a stage gave up on (not waited for)."""
    async with ResultWatcher(settings, codec) as watcher:
        # One malformed record on purpose: it must land in agent.deadletters, and the rest still run.
        producer = kafka.producer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic(TASKS), b"{\"not\": \"avro\"}", key=b"demo-garbage")
        finally:
            await producer.stop()
        ids = await submit_tasks(settings, codec, tasks)
        click.echo(f"submitted {len(ids)} tasks and 1 malformed record; waiting for results ...")
        done = 0

        def progress(_r: dict[str, Any]) -> None:
            nonlocal done
            done += 1
            if done % 5 == 0 or done == len(ids):
                click.echo(f"  {done}/{len(ids)} results")

        results = await watcher.wait(ids, timeout_s, on_result=progress,
                                     on_dead=lambda tid, dead: click.echo(f"  {dead_letter_line(tid, dead)}"))
        return results, {tid: d for tid, d in watcher.dead.items() if tid in ids}


async def _last_deadletter(settings: Settings, codec: Codec) -> dict[str, Any] | None:
    last = None
    async for r in read_topic(settings, codec, settings.topic(DEADLETTERS), from_beginning=True, idle_timeout_s=1.0):
        if r.record is not None:
            last = r.record
    return last


def _table(tasks: list[dict[str, Any]], results: dict[str, Any], dead: dict[str, Any]) -> None:
    click.echo(f"\n{'task':<16} {'pattern':<9} {'capability':<14} {'status':<9} {'model':<22} "
               f"{'latency ms':>10} {'cost usd':>11}")
    for t in tasks:
        r = results.get(t["task_id"])
        short = t["task_id"].rsplit("-", 1)[-1]
        if r is None:
            why = f"DEAD-LETTERED at stage {dead[t['task_id']]['stage']}" if t["task_id"] in dead else "NO RESULT"
            click.echo(f"{short:<16} {t.get('pattern', 'fast'):<9} {t.get('capability', 'coding'):<14} {why}")
            continue
        click.echo(f"{short:<16} {r['metadata'].get('pattern', 'fast'):<9} {t.get('capability', 'coding'):<14} "
                   f"{r['status']:<9} {r['model']:<22} {r['latency_ms']:>10.1f} {r['cost_usd']:>11.7f}")


def _observability(settings: Settings) -> None:
    """Where the demo's processes serve their metrics (and what they counted), and the dashboard's address."""
    if not settings.observability:
        return
    from streams.observability.figures import Sampler
    from streams.observability.processes import running as processes

    entries = processes(settings, settings.app_id)
    figures = Sampler(lambda: entries).figures()
    click.echo("\n== observability (docs/observability.md)")
    for p in figures["processes"]:
        click.echo(f"  {p['role']:<7} metrics {p['metrics_url']}  (pid {p['pid']})")
    dead = sum(figures["deadletters"].values())
    click.echo(f"  counted: {figures['tasks']['total']:,.0f} results {figures['tasks']['by_status']}, "
               f"{dead:,.0f} dead letter(s), ${figures['cost']['total_usd']:.6f} of model calls")
    click.echo(f"  dashboard: `agentstream dashboard`, then open http://127.0.0.1:{settings.dashboard_port}/ "
               "(every worker and sink of this data folder, live); `agentstream top` in a terminal;\n"
               "  a task's trace: `agentstream trace TASK_ID`")


def run_demo(settings: Settings, count: int, timeout: float) -> int:
    """Returns the exit code: 0 when every task got a result."""
    click.echo("== starting the local stack")
    for part in LocalStack(settings).up():
        click.echo(f"  {part.name:<9} {part.address:<28} {part.state}")
    asyncio.run(ensure_topics(settings))
    observe(settings, "demo", serve=False)  # the demo's tasks start their traces here, as with `submit`
    codec = default_codec()
    run_id = uuid.uuid4().hex[:6]
    click.echo(f"== starting a worker (log: {settings.data_dir / 'demo-worker.log'})")
    started = time.monotonic()
    with running(start_worker(settings, "demo-worker.log"), start_sinks(settings, "demo-sinks.log")):
        tasks = load_sample_tasks(count, run_id)
        results, dead = asyncio.run(_run(settings, codec, tasks, timeout))
        elapsed = time.monotonic() - started
        _table(tasks, results, dead)
        pattern_summary(results)
        ok = sum(1 for r in results.values() if r["status"] == "ok")
        cost = sum(r["cost_usd"] for r in results.values())
        click.echo(f"\n{len(results)}/{len(tasks)} tasks have a result ({ok} ok) in {elapsed:.1f}s "
                   f"(worker start included); total cost ${cost:.6f} (simulated model prices)"
                   + (f"; {len(dead)} dead-lettered" if dead else ""))
        last = asyncio.run(_last_deadletter(settings, codec))
        if last is not None:
            click.echo(f"dead letter: stage={last['stage']} {last['topic']}[{last['partition']}]@{last['offset']} "
                       f"error={last['error'][:90]!r}")
        from streams.demo.memory import show_memory

        show_memory(settings, tasks, results)
        failed = None
        if settings.prompts_enabled:  # prompt A/B experiment (issue 4)
            from streams.demo.experiment import run_experiment_demo
            experiment_failed = run_experiment_demo(settings, codec)
            failed = f"prompt experiment: {experiment_failed}" if experiment_failed is not None else None
        if settings.risk_enabled:  # the risk manager (issue 14): a cost spike switches lite mode on
            from streams.demo.risk import run_risk_demo
            risk_failed = run_risk_demo(settings, codec)
            failed = f"risk manager: {risk_failed}" if risk_failed is not None else failed
        if settings.tools_enabled:  # tools over MCP (issue 15)
            from streams.demo.tools import run_tools_demo
            tools_failed = run_tools_demo(settings, codec, run_id)
            failed = f"tools: {tools_failed}" if tools_failed is not None else failed
        _observability(settings)
    click.echo("\nLook further:\n  agentstream tail agent.results --from-beginning --count 5\n"
               "  agentstream tail agent.deadletters --from-beginning --json --count 1\n"
               "  agentstream memory search \"retry with backoff\"   and   agentstream memory stats\n"
               "  agentstream status        (the stack stays up; `make down` stops it)")
    if failed is not None:
        click.echo(f"SELF-CHECK FAILED: {failed}", err=True)
    return 0 if len(results) == len(tasks) and failed is None else 1
