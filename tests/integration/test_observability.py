"""Observability on the real stack: a known workload through a worker and the sinks, then

- the worker's /metrics shows exactly that workload (tasks by status and pattern, the dead letter, the
  budget event, every model call, token and dollar);
- each task has one trace, from `agentstream submit` through the worker to the sinks, with the GenAI
  attributes, kept locally (`agentstream trace`) and exported to an OTLP/HTTP receiver;
- the dashboard in headless chromium shows those numbers with no console error, and follows one more
  dead letter as it happens (screenshot kept; this test runs last, it adds that record);
  `agentstream top` renders them;
- consumer lag rises while the worker is stopped and falls to 0 once it has caught up.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, chromium
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from rich.console import Console

from schemas import default_codec
from streams import kafka
from streams.admin import ensure_topics
from streams.cli.main import cli
from streams.client import ResultWatcher, make_task, submit_tasks
from streams.harness import start_sinks, start_worker, stop
from streams.observability import processes
from streams.observability.dashboard import serve_dashboard
from streams.observability.figures import Sampler, parse
from streams.observability.lag import LagMonitor
from streams.observability.spanstore import traces_of_task
from streams.observability.top import render
from streams.settings import Settings
from streams.topics import ALL_TOPICS, TASKS

pytestmark = pytest.mark.integration

codec = default_codec()
ARTIFACTS = Path(os.environ.get("AGENTSTREAM_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


class OtlpReceiver:
    """A local OTLP/HTTP trace receiver: POST /v1/traces (protobuf), spans kept as (service, trace id, name)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    service = next((a.value.string_value for a in resource_spans.resource.attributes
                                    if a.key == "service.name"), "")
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            attributes = {a.key: a.value.string_value or a.value.int_value or a.value.double_value
                                          for a in span.attributes}
                            receiver.spans.append((service, span.trace_id.hex(), span.name, attributes))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Workload:
    settings: Settings
    tasks: list[dict[str, Any]]
    results: dict[str, dict[str, Any]]
    receiver: OtlpReceiver
    urls: dict[str, str] = field(default_factory=dict)  # role -> metrics URL


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return parse(answer.read().decode())


def _value(series: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in series.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


def _wait(check: Any, timeout_s: float, what: str, every_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


def _urls(settings: Settings, pids: dict[str, int]) -> dict[str, str]:
    def found() -> dict[str, str] | None:
        listed = {e.pid: e.metrics_url for e in processes.running(settings, settings.app_id)}
        return {role: listed[pid] for role, pid in pids.items()} if set(pids.values()) <= set(listed) else None
    return _wait(found, 120, "the processes' metrics URLs")


async def _run_workload(settings: Settings, tasks: list[dict[str, Any]], tmp: Path) -> dict[str, dict[str, Any]]:
    """The poison record, then the tasks through `agentstream submit --file` (a process of its own, where
    each task's trace starts); the results as they come back."""
    path = tmp / "tasks.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    async with ResultWatcher(settings, codec) as watcher:
        producer = kafka.producer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic(TASKS), b"\x00\xffnot avro", key=b"poison")
        finally:
            await producer.stop()
        env = {**os.environ, **settings.as_env(), "AGENTSTREAM_LOG_FORMAT": "json"}
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "streams", "submit", "--file", str(path)],
                                       env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        return await watcher.wait([t["task_id"] for t in tasks], 180)


@pytest.fixture(scope="module")
def workload(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workload]:
    receiver = OtlpReceiver()
    settings = stack_settings.isolated(f"obs{os.getpid()}", lag_interval_s=1.0, otlp_endpoint=receiver.url,
                                       quality_candidates=3)
    asyncio.run(ensure_topics(settings))
    tasks = [make_task("add a cache to the user lookup", tenant="acme", pattern="fast"),
             make_task("write a retry helper with backoff", tenant="acme", pattern="fast"),
             make_task("split the billing module", tenant="globex", pattern="balanced"),
             make_task("design the export format", tenant="globex", pattern="quality"),
             make_task("too expensive for its budget", tenant="acme", pattern="fast", budget_usd=1e-12)]
    worker = start_worker(settings, f"worker-{settings.app_id}.log")
    sinks = start_sinks(settings, f"sinks-{settings.app_id}.log")
    try:
        urls = _urls(settings, {"worker": worker.pid, "sinks": sinks.pid})
        results = asyncio.run(_run_workload(settings, tasks, tmp_path_factory.mktemp("obs")))
        assert set(results) == {t["task_id"] for t in tasks}
        yield Workload(settings, tasks, results, receiver, urls)
    finally:
        stop(worker, sinks)
        receiver.close()


def test_the_worker_metrics_show_exactly_the_workload(workload: Workload) -> None:
    results = workload.results
    statuses = sorted((r["status"], r["metadata"]["pattern"]) for r in results.values())
    assert statuses == [("budget_exceeded", "fast"), ("ok", "balanced"), ("ok", "fast"), ("ok", "fast"),
                        ("ok", "quality")]
    # a task is counted once its ledger writes are on the broker too, a moment after its result
    m = _wait(lambda: (s := _metrics(workload.urls["worker"])) and _value(s, "agentstream_deadletters_total") >= 1
              and _value(s, "agentstream_tasks_total") >= 5 and s, 30, "the tasks and the dead letter counted")
    assert _value(m, "agentstream_tasks_total", status="ok", pattern="fast") == 2
    assert _value(m, "agentstream_tasks_total", status="ok", pattern="balanced") == 1
    assert _value(m, "agentstream_tasks_total", status="ok", pattern="quality") == 1
    assert _value(m, "agentstream_tasks_total", status="budget_exceeded", pattern="fast") == 1
    assert _value(m, "agentstream_tasks_total") == 5
    assert _value(m, "agentstream_task_seconds_count") == 5
    assert _value(m, "agentstream_deadletters_total", stage="decode") == 1
    assert _value(m, "agentstream_deadletters_total") == 1
    assert _value(m, "agentstream_budget_events_total", tenant="acme", event="exceeded") == 1
    assert _value(m, "agentstream_budget_events_total") == 1
    # model calls: 2 fast, 3 balanced steps, 3 candidates and the judge; the over-budget task calls none
    assert _value(m, "agentstream_llm_calls_total", outcome="ok") == 9 == _value(m, "agentstream_llm_calls_total")
    assert _value(m, "agentstream_stage_seconds_count", stage="model_call") == 9
    for direction, column in (("input", "tokens_in"), ("output", "tokens_out")):
        counted = _value(m, "agentstream_llm_tokens_total", direction=direction)
        assert counted == sum(r[column] for r in results.values())
    for tenant in ("acme", "globex"):
        spent = sum(r["cost_usd"] for r in results.values() if r["tenant"] == tenant)
        assert _value(m, "agentstream_llm_cost_usd_total", tenant=tenant) == pytest.approx(spent, rel=1e-9)
    assert _value(m, "agentstream_llm_calls_in_flight") == 0
    assert _value(m, "agentstream_memory_lookups_total", tier="l1") == 5  # one recall per task, L1 first
    assert _value(m, "agentstream_stage_seconds_count", stage="memory_recall") == 5
    assert _value(m, "agentstream_stage_seconds_count", stage="queue_wait") == 6  # five tasks and the poison
    assert _value(m, "agentstream_stage_seconds_count", stage="send") >= 5 + 10  # results and outputs at least
    group = f"{workload.settings.app_id}-tasks"
    lag = _wait(lambda: [v for (n, ls), v in _metrics(workload.urls["worker"]).items()
                         if n == "kafka_consumergroup_lag" and dict(ls)["consumergroup"] == group],
                30, "the task group's lag")
    assert len(lag) == 2 * workload.settings.partitions  # agent.tasks and agent.tasks.by-tenant, every partition
    sinks = _wait(lambda: (s := _metrics(workload.urls["sinks"])) and
                  _value(s, "agentstream_sink_records_total", tier="postgres", result="written") >= 15 and s,
                  60, "the sinks to write the outputs and results")
    # 10 outputs (2 fast, 3 balanced, 3 candidates and a judge, 1 over budget) and 5 results
    assert _value(sinks, "agentstream_sink_records_total", tier="postgres", result="written") == 15
    assert _value(sinks, "agentstream_sink_records_total", tier="vectors", result="written") == 5  # results only
    assert _value(sinks, "agentstream_stage_seconds_count", stage="sink-postgres") >= 1


def _one_trace(settings: Settings, task_id: str) -> list[Any]:
    found = traces_of_task(settings.data_dir, task_id)
    assert len(found) <= 1, f"task {task_id} is in {len(found)} traces"
    return next(iter(found.values()), [])


def test_one_trace_per_task_from_submit_through_worker_to_sinks(workload: Workload) -> None:
    prefix = workload.settings.topic_prefix
    for task in workload.tasks:
        tid = task["task_id"]
        spans = _wait(lambda tid=tid: (s := _one_trace(workload.settings, tid)) and
                      {"sink archive", "sink postgres"} <= {x.name for x in s} and s, 60, f"the sink spans of {tid}")
        services = {s.service for s in spans}
        assert {"agentstream-submit", "agentstream-worker", "agentstream-sinks"} <= services
        ids = {s.span_id for s in spans}
        roots = [s for s in spans if s.parent_id not in ids]
        assert [r.name for r in roots] == ["submit task"]  # one tree: every other span's parent is in it
        names = [s.name for s in spans]
        assert f"process {prefix}agent.tasks" in names and "memory recall" in names
        by_id = {s.span_id: s for s in spans}
        for sink in (s for s in spans if s.name.startswith("sink ")):  # each hop: under the span that produced it
            producer = by_id[sink.parent_id]
            if sink.attributes["messaging.destination.name"] == f"{prefix}agent.tasks":  # the archived task
                assert producer.name == "submit task" and producer.service == "agentstream-submit"
            else:  # outputs and results, produced by the worker as it ran the task
                assert producer.name.startswith(f"process {prefix}agent.tasks") and sink.service == "agentstream-sinks"
                assert producer.service == "agentstream-worker"
        result = workload.results[tid]
        processed = next(s for s in spans if s.attributes.get("agentstream.status"))
        assert processed.name == f"process {prefix}agent.tasks"
        assert processed.attributes["agentstream.task_id"] == tid
        assert processed.attributes["agentstream.tenant"] == task["tenant"]
        assert processed.attributes["agentstream.cost_usd"] == pytest.approx(result["cost_usd"])
        chats = [s for s in spans if s.name.startswith("chat ")]
        agents = [s for s in spans if s.name.startswith("invoke_agent ")]
        assert len(agents) == result["steps"]
        if result["status"] == "ok":
            assert len(chats) == result["steps"]
            assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in chats) == result["tokens_in"]
        for chat in chats:
            a = chat.attributes
            assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "simulator"
            assert chat.name == f"chat {a['gen_ai.request.model']}" and a["gen_ai.usage.output_tokens"] > 0
        assert all(a.attributes["gen_ai.agent.name"] == a.name.removeprefix("invoke_agent ") for a in agents)

    exported = _wait(lambda: {(svc, tr) for svc, tr, _n, _a in workload.receiver.spans}, 30, "OTLP exports")
    for task in workload.tasks:
        (trace_id,) = traces_of_task(workload.settings.data_dir, task["task_id"])
        assert {"agentstream-worker", "agentstream-sinks", "agentstream-submit"} <= {
            svc for svc, tr in exported if tr == trace_id}, f"trace {trace_id} not exported by every process"

    out = CliRunner().invoke(cli, ["trace", workload.tasks[2]["task_id"]], env=workload.settings.as_env())
    assert out.exit_code == 0, out.output
    assert "[worker]" in out.output and "[sinks]" in out.output and "[submit]" in out.output
    assert "invoke_agent planner" in out.output and "chat simulator/" in out.output and "tokens=" in out.output
    missing = CliRunner().invoke(cli, ["trace", "no-such-task"], env=workload.settings.as_env())
    assert missing.exit_code != 0 and "no span of task" in missing.output


def test_status_lists_the_processes_with_their_metrics_urls(workload: Workload) -> None:
    out = CliRunner().invoke(cli, ["status"], env=workload.settings.as_env())
    assert out.exit_code == 0, out.output
    for url in workload.urls.values():
        assert url in out.output


def test_top_renders_the_workload(workload: Workload) -> None:
    sampler = Sampler(lambda: processes.running(workload.settings, workload.settings.app_id))
    sampler.sample()
    console = Console(record=True, width=160)
    console.print(render(sampler.figures()))
    text = console.export_text()
    assert "results 5" in text and "dead letters 1" in text
    assert "budget_exceeded" in text and "model_call" in text and "decode" in text
    assert workload.urls["worker"] in text and workload.urls["sinks"] in text


def test_the_top_command_prints_the_figures(workload: Workload) -> None:
    out = CliRunner().invoke(cli, ["top", "--once", "--app-only", "--interval", "0.5"], env=workload.settings.as_env())
    assert out.exit_code == 0, out.output
    assert "results 5" in out.output and "model_call" in out.output and "dead letters 1" in out.output


def test_the_dashboard_command_serves_its_page_and_json(workload: Workload) -> None:
    env = {**os.environ, **workload.settings.as_env(), "AGENTSTREAM_DASHBOARD_PORT": "0"}
    server = subprocess.Popen([sys.executable, "-m", "streams", "dashboard", "--app-only", "--interval", "0.5"],
                              env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert server.stderr is not None
        line = _wait(lambda: server.stderr.readline(), 60, "the dashboard's address")
        url = line.split(": ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and "app " + workload.settings.app_id in line

        def figures() -> dict | None:
            with urllib.request.urlopen(url + "api/figures", timeout=5) as answer:
                got = json.loads(answer.read())
            return got if got.get("tasks", {}).get("total") == 5 and got.get("recent") else None
        got = _wait(figures, 60, "the dashboard's figures")
        assert got["deadletters"] == {"decode": 1.0} and len(got["processes"]) == 2
        assert {r["task_id"] for r in got["recent"]} == {t["task_id"] for t in workload.tasks}
        with urllib.request.urlopen(url, timeout=5) as answer:
            page = answer.read().decode()
        assert 'id="tasks-total"' in page and "http://" not in page and "https://" not in page  # fetches nothing else
        tid = workload.tasks[0]["task_id"]
        with urllib.request.urlopen(f"{url}api/trace/{tid}", timeout=5) as answer:
            trace = json.loads(answer.read())
        (one,) = trace["traces"]
        assert one["rows"][0]["name"] == "submit task" and {r["process"] for r in one["rows"]} >= {"worker", "sinks"}
    finally:
        server.terminate()
        server.wait(30)
    assert server.returncode == 0


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (.ci/run installs Debian's package)")
def test_the_dashboard_in_a_real_browser(workload: Workload) -> None:
    ready: list[str] = []
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve_dashboard(workload.settings, 0, stopping, 1.0, ready.append, app_only=True))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        url = _wait(lambda: ready and ready[0], 30, "the dashboard to listen")
        page_errors = asyncio.run(_browse(workload, url))
    finally:
        loop.call_soon_threadsafe(stopping.set)
        server.join(30)
    assert page_errors == []


async def _browse(workload: Workload, url: str) -> list[str]:
    some = workload.tasks[3]["task_id"]
    async with Browser() as page:
        await page.goto(url)
        await page.wait_for("document.getElementById('tasks-total').textContent === '5'", 60)
        await page.wait_for(f"!!document.querySelector('a.task-link[href=\"#trace/{some}\"]')", 30)
        figures = await page.eval("""(() => {
            const bar = (panel, label) => { const g = document.querySelector(`#${panel} g.bar[data-label="${label}"]`);
                                            return g ? Number(g.dataset.value) : null; };
            return { dead: bar('deadletters', 'decode'), ok: bar('results-by-status', 'ok'),
                     over: bar('results-by-status', 'budget_exceeded'),
                     stages: [...document.querySelectorAll('#stages g.bar')].map(g => g.dataset.label),
                     lagBars: document.querySelectorAll('#lag g.bar').length,
                     calls: [...document.querySelectorAll('#llm g.bar')].filter(g => g.dataset.label.endsWith('/ok'))
                              .reduce((n, g) => n + Number(g.dataset.value), 0),
                     processes: document.getElementById('processes').textContent,
                     alerts: document.getElementById('alerts').textContent,
                     deadTotal: document.getElementById('dead-total').textContent,
                     cost: document.getElementById('cost-table').textContent };
        })()""")
        assert figures["dead"] == 1 and figures["ok"] == 4 and figures["over"] == 1 and figures["deadTotal"] == "1"
        assert {"decode", "model_call", "memory_recall", "queue_wait", "send"} <= set(figures["stages"])
        assert figures["lagBars"] >= 2 * workload.settings.partitions
        assert figures["calls"] == 9
        assert "acme" in figures["cost"] and "globex" in figures["cost"]
        assert workload.urls["worker"] in figures["processes"]
        # the page follows what happens: one more poison record, and its count and alert appear
        producer = kafka.producer(workload.settings)
        await producer.start()
        try:
            await producer.send_and_wait(workload.settings.topic(TASKS), b"\x00\xffpoison again", key=b"poison")
        finally:
            await producer.stop()
        await page.wait_for("document.getElementById('dead-total').textContent === '2'", 60)
        await page.wait_for("document.getElementById('alerts').textContent.includes('dead letter(s) at stage decode')",
                            30)
        await page.eval(f"location.hash = '#trace/{some}'")
        rows = await page.wait_for("document.querySelectorAll('#trace .wf-row').length", 30)
        assert rows > 5
        trace_text = await page.eval("document.getElementById('trace').textContent")
        assert "invoke_agent" in trace_text and "chat simulator/" in trace_text and "[sinks]" in trace_text
        await page.screenshot(ARTIFACTS / "dashboard.png")
        return list(page.errors)


async def _lag_of(settings: Settings, group: str) -> int:
    """The group's total lag as the dashboard reads it, with no process of the group running."""
    got: list[dict] = []
    topics = {settings.topic(t) for t in ALL_TOPICS}
    monitor = LagMonitor(settings, got.append, discover=(f"{settings.app_id}-", topics)).start()
    try:
        while not any(any(g == group for g, _t, _p in lag) for lag in got):
            await asyncio.sleep(0.2)
    finally:
        await asyncio.to_thread(monitor.stop)
    return sum(v for (g, _t, _p), v in got[-1].items() if g == group)


async def test_lag_rises_while_the_worker_is_stopped_and_falls_to_zero(isolated: Settings, worker_factory) -> None:
    settings = isolated.model_copy(update={"lag_interval_s": 1.0})
    group = f"{settings.app_id}-tasks"
    first = worker_factory(lag_interval_s=1.0)
    async with ResultWatcher(settings, codec) as watcher:
        warm = make_task("warm-up")
        await submit_tasks(settings, codec, [warm])
        assert await watcher.wait([warm["task_id"]], 120)
    await asyncio.to_thread(stop, first)
    tasks = [make_task(f"queued while no worker runs {n}", tenant=f"t{n % 3}") for n in range(12)]
    async with ResultWatcher(settings, codec) as watcher:
        await submit_tasks(settings, codec, tasks)
        assert await _lag_of(settings, group) == 12  # nobody consumes: the tasks wait, and the lag says so
        second = worker_factory(lag_interval_s=1.0, simulator_latency_ms=400.0, worker_concurrency=1)
        url = await asyncio.to_thread(_urls, settings, {"worker": second.pid})
        seen: list[float] = []
        waiting = asyncio.create_task(watcher.wait([t["task_id"] for t in tasks], 180))
        while not waiting.done():
            series = await asyncio.to_thread(_metrics, url["worker"])
            seen.append(_value(series, "kafka_consumergroup_lag", consumergroup=group))
            await asyncio.sleep(0.3)
        assert len(await waiting) == 12
    assert max(seen) >= 6  # read by the new worker while it still had most of them to do

    def caught_up() -> bool:
        return _value(_metrics(url["worker"]), "kafka_consumergroup_lag", consumergroup=group) == 0
    await asyncio.to_thread(_wait, caught_up, 30, "the lag to fall to 0")


@pytest.mark.slow
def test_the_bench_measures_observability_on_and_off(isolated: Settings) -> None:
    """The code path of `make bench`'s observability figures at a tiny size; the figures are not checked."""
    out = CliRunner().invoke(cli, ["bench", "--events", "500", "--tasks", "30", "--only", "observability"],
                             env=isolated.as_env(), catch_exceptions=False).output
    assert "observability on" in out and "observability off" in out and "observability cost" in out
    assert out.count("/s ") >= 4 and "worker CPU" in out  # two rounds of each, with the worker's CPU per task
