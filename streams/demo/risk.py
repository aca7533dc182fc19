"""The demo's risk part (issue 14): a tenant's spend spikes, the risk stage raises an alert and switches
that tenant to lite mode, its next results are lite, and lite mode is released once spend is calm.

Runs on topics of its own (`Settings.isolated`) with a worker whose windows are seconds long, so the
whole story takes about half a minute."""

from __future__ import annotations

import asyncio
import time
import uuid

import click

from schemas import Codec
from schemas.events import Record
from streams.admin import ensure_topics
from streams.client import ResultWatcher, make_task, read_topic, submit_tasks
from streams.harness import running, start_worker
from streams.settings import Settings
from streams.topics import ALERTS, CONTROL

__all__ = ["run_risk_demo"]


async def _records(settings: Settings, codec: Codec, topic: str) -> list[Record]:
    return [r.record async for r in read_topic(settings, codec, settings.topic(topic), from_beginning=True,
                                               idle_timeout_s=0.5) if r.record is not None]


async def _wait_alert(settings: Settings, codec: Codec, kind: str, timeout_s: float) -> Record | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [a for a in await _records(settings, codec, ALERTS) if a["kind"] == kind]
        if found:
            return found[0]
    return None


async def _story(settings: Settings, codec: Codec) -> str | None:
    async with ResultWatcher(settings, codec) as watcher:
        ids: list[str] = []
        click.echo("  steady: tenants acme and globex, 2 cheap tasks a second each ...")
        for n in range(12):
            ids += await submit_tasks(settings, codec, [make_task(f"small fix {n}", tenant=t)
                                                        for t in ("acme", "globex")])
            await asyncio.sleep(0.4)
        click.echo("  spike: acme sends `quality` tasks at ten times the rate ...")
        for n in range(8):
            ids += await submit_tasks(settings, codec, [make_task(f"design review {n}.{k}", tenant="acme",
                                                                  pattern="quality") for k in range(10)]
                                      + [make_task(f"small fix late {n}", tenant="globex")])
            await asyncio.sleep(0.3)
        alert = await _wait_alert(settings, codec, "cost_spike", 20)
        if alert is None:
            return "no cost_spike alert"
        click.echo(f"  ALERT {alert['severity']} {alert['kind']} tenant={alert['tenant']}: {alert['summary']}")
        click.echo(f"        spend ${float(alert['details']['window_usd']):.6f} in {alert['details']['window_s']} s "
                   f"against a baseline of ${float(alert['details']['baseline_usd']):.6f}")
        commands = await _records(settings, codec, CONTROL)
        on = next((c for c in commands if c["value"] == "on"), None)
        if on is not None:
            click.echo(f"  control: lite_mode on for tenant {on['tenant']} by {on['issued_by']}: {on['reason']}")
        after = await submit_tasks(settings, codec, [make_task("design review after the spike", tenant="acme",
                                                               pattern="quality"),
                                                     make_task("small fix after the spike", tenant="globex")])
        results = await watcher.wait([*ids, *after], 60)
        for task_id in after:
            r = results[task_id]
            click.echo(f"  next result of {r['tenant']:<7} model={r['model']:<20} steps={r['steps']} "
                       f"lite_mode={r['metadata'].get('lite_mode', '-')} cost=${r['cost_usd']:.7f}")
        if results[after[0]]["metadata"].get("lite_mode") != "tenant" or "lite_mode" in results[after[1]]["metadata"]:
            return "lite mode did not apply to the spiking tenant only"
        released = await _wait_alert(settings, codec, "cost_spike_released", 30)
        if released is None:
            return "lite mode was not released after the calm period"
        click.echo(f"  ALERT {released['severity']} {released['kind']} tenant={released['tenant']}: "
                   f"{released['summary']}")
    return None


def run_risk_demo(settings: Settings, codec: Codec) -> str | None:
    """Tell the cost-spike story; None when it went as it should, else what went wrong."""
    click.echo("\n== risk manager: a cost spike switches lite mode on (docs/risk.md)")
    run = settings.isolated(f"risk{uuid.uuid4().hex[:6]}", memory_context_k=0, prompts_enabled=False,
                            risk_spike_window_s=1.0, risk_baseline_window_s=3.0, risk_spike_factor=5.0,
                            risk_spike_floor_usd=0.0002, risk_calm_s=2.0, risk_tick_s=0.2, alert_fold_s=1.0)
    asyncio.run(ensure_topics(run))
    with running(start_worker(run, "demo-risk-worker.log")):
        asyncio.run(_wait_ready(run, codec))
        failed = asyncio.run(_story(run, codec))
    click.echo(f"  see them again: AGENTSTREAM_TOPIC_PREFIX={run.topic_prefix} agentstream alerts   "
               "(and ... agentstream control show)")
    return failed


async def _wait_ready(settings: Settings, codec: Codec, timeout_s: float = 90.0) -> None:
    """Until the worker answers (its risk stage starts with it)."""
    async with ResultWatcher(settings, codec) as watcher:
        ids = await submit_tasks(settings, codec, [make_task("warm-up", tenant="warmup")])
        await watcher.wait(ids, timeout_s)
