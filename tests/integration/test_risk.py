"""The risk manager on the real stack: lite mode by hand and by a cost spike, alerts on the topic, the
webhook and the logs (never a secret), and the other detectors."""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp import web

from schemas import default_codec
from schemas.events import Record
from streams import kafka
from streams.admin import ensure_topics
from streams.client import ResultWatcher, make_task, read_topic, submit_tasks
from streams.devstack import free_port
from streams.harness import Child, start_command, start_worker, stop
from streams.settings import Settings
from streams.topics import ALERTS, CONTROL, DEADLETTERS, RESULTS, TASKS

pytestmark = pytest.mark.integration

codec = default_codec()


def _log_lines(path: Path) -> list[dict]:
    lines = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


async def _wait_for_log(path: Path, event: str, timeout_s: float, **fields: object) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in _log_lines(path):
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items()):
                return line
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {event!r} {fields} in {path} after {timeout_s} s:\n{path.read_text()[-3000:]}")


async def _records(settings: Settings, topic: str, idle_s: float = 1.0) -> list[Record]:
    return [r.record async for r in read_topic(settings, codec, settings.topic(topic), from_beginning=True,
                                               idle_timeout_s=idle_s) if r.record is not None]


async def _wait_for_alert(settings: Settings, kind: str, timeout_s: float, tenant: str | None = None) -> Record:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for alert in await _records(settings, ALERTS, idle_s=0.5):
            if alert["kind"] == kind and (tenant is None or alert["tenant"] == tenant):
                return alert
    raise AssertionError(f"no {kind} alert for {tenant} within {timeout_s} s")


def _cli(settings: Settings, *args: str, log_name: str = "cli.log") -> str:
    path = settings.data_dir / log_name
    start = path.stat().st_size if path.exists() else 0
    child = start_command(settings, *args, log_name=log_name)
    assert child.wait(60) == 0, path.read_text()[-2000:]
    return path.read_text()[start:]


@pytest.fixture
def workers(isolated: Settings) -> Iterator[list[tuple[Settings, Child, Path]]]:
    """Start workers with their own log files; stopped after the test."""
    asyncio.run(ensure_topics(isolated))
    started: list[tuple[Settings, Child, Path]] = []

    def start(n: int, **overrides: object) -> list[tuple[Settings, Child, Path]]:
        settings = isolated.model_copy(update={"memory_context_k": 0, "prompts_enabled": False, **overrides})
        for _ in range(n):
            name = f"worker-{settings.app_id}-{len(started)}.log"
            started.append((settings, start_worker(settings, name), settings.data_dir / name))
        return started[-n:]

    yield start  # type: ignore[misc]
    stop(*(child for _, child, _ in started))


async def test_manual_lite_mode_reaches_every_worker_within_2_s(isolated: Settings, workers) -> None:
    two = workers(2, risk_enabled=False)
    for _, _, log in two:
        await _wait_for_log(log, "following the control topic", 60)
    out = _cli(isolated, "control", "lite-mode", "on", "--for", "10m", "--reason", "drill")
    command_id = out.split("(")[-1].split(")")[0]
    assert "lite mode on for every tenant" in out and command_id.startswith("cmd-")
    command = next(c for c in await _records(isolated, CONTROL) if c["command_id"] == command_id)
    for _, _, log in two:
        applied = await _wait_for_log(log, "control command applied", 10, command_id=command_id)
        at_ms = datetime.fromisoformat(applied["timestamp"]).timestamp() * 1000
        assert at_ms - command["issued_at"] <= 2000, "a worker applied the command more than 2 s after it was issued"
    async with ResultWatcher(isolated, codec) as watcher:
        ids = await submit_tasks(isolated, codec, [make_task("a careful parser", pattern="quality", tenant=t)
                                                   for t in ("a", "b", "c")])
        results = await watcher.wait(ids, 60)
    for r in results.values():
        assert r["metadata"]["lite_mode"] == "global" and r["steps"] == 1 and r["model"] == "simulator/fast-1"
    _cli(isolated, "control", "lite-mode", "off", "--reason", "drill over")
    shown = _cli(isolated, "control", "show")
    assert "lite_mode  global" in shown and " off " in shown and "drill over" in shown


@pytest.mark.slow  # about 30 s: make test-slow (lite mode end to end is in make test by the manual command)
async def test_a_cost_spike_switches_its_tenant_to_lite_mode_and_is_released(isolated: Settings, workers) -> None:
    """A steady tenant, then one tenant at ten times the rate with quality tasks: an alert, lite mode for that
    tenant only (recorded on its results), released once its spend is calm again."""
    # A fast task costs about 2.4e-5 USD, a quality one about 4.6e-4 (1e-3 in lite mode at the burst's rate).
    workers(1, risk_spike_window_s=2.0, risk_baseline_window_s=4.0, risk_spike_factor=5.0,
            risk_spike_floor_usd=0.0002, risk_calm_s=2.0, risk_tick_s=0.2, alert_fold_s=1.0)
    await _wait_for_log(isolated.data_dir / f"worker-{isolated.app_id}-0.log", "processor started", 60, stage="risk")
    ids: list[str] = []
    async with ResultWatcher(isolated, codec) as watcher:
        async def send(tasks: list[Record]) -> None:
            ids.extend(await submit_tasks(isolated, codec, tasks))

        for n in range(16):  # steady: 2 cheap tasks a second from each tenant, past window + baseline
            await send([make_task(f"small fix {n}", tenant="spiky"), make_task(f"small fix {n}", tenant="steady")])
            await asyncio.sleep(0.4)
        spike_start = time.time() * 1000
        for n in range(8):  # ten times the rate, quality tasks
            await send([make_task(f"big design {n}.{k}", tenant="spiky", pattern="quality") for k in range(10)]
                       + [make_task(f"small fix late {n}", tenant="steady")])
            await asyncio.sleep(0.3)
        alert = await _wait_for_alert(isolated, "cost_spike", 60, tenant="spiky")  # (a loaded machine is slow)
        for n in range(3):  # after the alert: the spiky tenant's quality tasks run lite
            await send([make_task(f"big design after {n}", tenant="spiky", pattern="quality"),
                        make_task(f"small fix after {n}", tenant="steady")])
        released = await _wait_for_alert(isolated, "cost_spike_released", 60, tenant="spiky")
        results = await watcher.wait(ids, 120)
    assert alert["severity"] == "critical" and float(alert["details"]["window_usd"]) > 5 * float(
        alert["details"]["baseline_usd"])
    assert alert["first_seen"] > spike_start
    spiky_after = [r for r in results.values()
                   if r["tenant"] == "spiky" and r["created_at"] > alert["last_seen"] + 1000]
    assert spiky_after and all(r["metadata"].get("lite_mode") == "tenant" and r["steps"] == 1
                               and r["model"] == "simulator/fast-1" for r in spiky_after)
    steady = [r for r in results.values() if r["tenant"] == "steady"]
    assert steady and not any("lite_mode" in r["metadata"] for r in steady)
    assert released["first_seen"] > alert["first_seen"]
    commands = [c for c in await _records(isolated, CONTROL) if c["issued_by"] == "risk:cost_spike"]
    assert [(c["tenant"], c["value"]) for c in commands][:1] == [("spiky", "on")] and commands[0]["expires_at"]
    assert (commands[-1]["tenant"], commands[-1]["value"]) == ("spiky", "off")
    assert not any(c["scope"] == "global" for c in commands)


def _generated_credentials() -> tuple[str, str]:
    alphabet = string.ascii_uppercase + string.digits
    aws = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    gh = "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
    return aws, gh


async def test_key_exposure_and_the_other_detectors_raise_alerts_that_never_hold_the_secret(
        isolated: Settings, workers) -> None:
    received: list[dict] = []
    attempts: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        attempts.append(1)
        if len(attempts) == 1:  # the first delivery fails: the alert must be retried
            return web.Response(status=503)
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/alerts", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        (_, _, log), = workers(1, alert_fold_s=2.0, risk_deadletter_burst=3,
                               alert_webhook_url=f"http://127.0.0.1:{port}/alerts")
        creds = [_generated_credentials() for _ in range(4)]
        tasks = [make_task(f"deploy with key {aws} and token {gh} please", tenant="leaky") for aws, gh in creds]
        tasks.append(make_task("an expensive one", tenant="thrifty", budget_usd=1e-9))
        async with ResultWatcher(isolated, codec) as watcher:
            ids = await submit_tasks(isolated, codec, tasks)
            results = await watcher.wait(ids, 60)
        assert results[tasks[-1]["task_id"]]["status"] == "budget_exceeded"
        producer = kafka.producer(isolated)
        await producer.start()
        try:
            for _ in range(3):  # a dead-letter burst
                await producer.send_and_wait(isolated.topic(TASKS), b"\x00garbage", key=b"k", partition=0)
            result = {**results[tasks[0]["task_id"]]}
            for output in ("first answer", "a different answer"):  # one task answered twice, differently
                await producer.send_and_wait(isolated.topic(RESULTS), codec.encode(
                    "TaskResult", {**result, "task_id": "twice-run", "output": output}), key=b"twice-run")
        finally:
            await producer.stop()
        exposure = await _wait_for_alert(isolated, "key_exposure", 20, tenant="leaky")
        budget = await _wait_for_alert(isolated, "budget_exhausted", 20, tenant="thrifty")
        burst = await _wait_for_alert(isolated, "dead_letter_burst", 20)
        conflict = await _wait_for_alert(isolated, "agent_conflict", 20)
        deadline = time.monotonic() + 20
        while len(received) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        await runner.cleanup()
    assert exposure["count"] == 8 and exposure["severity"] == "critical"  # four tasks, two keys each: one alert
    assert len([a for a in await _records(isolated, ALERTS) if a["kind"] == "key_exposure"]) == 1
    assert set(exposure["details"]["kinds"].split(", ")) == {"aws_access_key", "github_token"}
    task_partitions = {f"{isolated.topic(TASKS)}[" in loc for loc in exposure["details"]["locations"].split(", ")}
    assert task_partitions == {True} and exposure["details"]["locations"].count("description") == 4
    assert budget["details"]["last_task_id"] == tasks[-1]["task_id"]
    assert burst["count"] >= 1 and "decode" in burst["details"]["stages"]
    assert len([d for d in await _records(isolated, DEADLETTERS)]) == 3  # the risk stage adds none of its own
    assert conflict["details"]["task_id"] == "twice-run" and conflict["tenant"] == result["tenant"]
    assert len(attempts) > len(received) and {a["kind"] for a in received} >= {"key_exposure", "budget_exhausted"}
    webhook_exposure = next(a for a in received if a["kind"] == "key_exposure")
    assert webhook_exposure["count"] == 8 and webhook_exposure["details"] == exposure["details"]
    everything = json.dumps(await _records(isolated, ALERTS)) + json.dumps(received) + log.read_text()
    for aws, gh in creds:
        assert aws not in everything and gh not in everything
    assert "risk alert" in log.read_text()


@pytest.mark.slow  # about 35 s: its own worker and the whole story
def test_the_demo_shows_a_cost_spike_switching_lite_mode_on(isolated: Settings, capsys) -> None:
    from streams.demo.risk import run_risk_demo

    assert run_risk_demo(isolated, codec) is None
    shown = capsys.readouterr().out
    assert "ALERT critical cost_spike tenant=acme" in shown and "lite_mode=tenant" in shown
    assert "control: lite_mode on for tenant acme by risk:cost_spike" in shown and "cost_spike_released" in shown
