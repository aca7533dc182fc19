"""Observability without the stack: what the runner reports, spans and their Kafka headers, the local
span files and the waterfall, the process files, and the figures computed from real /metrics endpoints."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agents.factory import RunnerConfig, build_runner
from agents.simulator import install_simulator
from sinks.base import MemoryRecord, Rejection
from streams.observability import processes
from streams.observability.figures import Sampler, Scrape, increase, parse, quantile
from streams.observability.metrics import Metrics
from streams.observability.propagation import context_of, with_context
from streams.observability.runtime import serve_metrics
from streams.observability.spanstore import JsonLinesExporter, traces_of_task
from streams.observability.telemetry import Telemetry
from streams.observability.waterfall import render_text, rows
from streams.settings import Settings


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def telemetry(spans: InMemorySpanExporter) -> Telemetry:
    provider = TracerProvider(resource=Resource({"service.name": "agentstream-test"}))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    t = Telemetry()
    t.enable(Metrics(), provider.get_tracer("test"))
    return t


def value(t: Telemetry, name: str, **labels: str) -> float:
    assert t.metrics is not None
    return t.metrics.registry.get_sample_value(name, labels) or 0.0


def _task(n: int, **fields: Any) -> dict[str, Any]:
    return {"task_id": f"obs-{n}", "description": f"add a cache to lookup {n}", "created_at": 1, "tenant": "acme",
            **fields}


def test_the_runner_reports_each_model_call_budget_event_and_span(telemetry: Telemetry,
                                                                  spans: InMemorySpanExporter) -> None:
    install_simulator()
    runner = build_runner(RunnerConfig(quality_candidates=3), observer=telemetry.run_observer())

    async def run_all() -> list[Any]:
        return [await runner.run(_task(1, pattern="fast")), await runner.run(_task(2, pattern="balanced")),
                await runner.run(_task(3, pattern="quality")), await runner.run(_task(4, budget_usd=1e-12))]

    runs = asyncio.run(run_all())
    assert [r.result["status"] for r in runs] == ["ok", "ok", "ok", "budget_exceeded"]
    outputs = [o for r in runs for o in r.outputs if o["status"] == "ok"]
    assert len(outputs) == 1 + 3 + 4  # fast, planner/coder/reviewer, three candidates and the judge
    calls = sum(value(telemetry, "agentstream_llm_calls_total", model=m, outcome="ok")
                for m in {o["model"] for o in outputs})
    assert calls == len(outputs)
    for direction, field in (("input", "tokens_in"), ("output", "tokens_out")):
        counted = sum(value(telemetry, "agentstream_llm_tokens_total", model=m, direction=direction)
                      for m in {o["model"] for o in outputs})
        assert counted == sum(o[field] for o in outputs)
    cost = sum(value(telemetry, "agentstream_llm_cost_usd_total", tenant="acme", model=m)
               for m in {o["model"] for o in outputs})
    assert cost == pytest.approx(sum(r.result["cost_usd"] for r in runs))
    assert value(telemetry, "agentstream_budget_events_total", tenant="acme", event="exceeded") == 1
    assert value(telemetry, "agentstream_llm_calls_in_flight") == 0
    assert value(telemetry, "agentstream_stage_seconds_count", stage="model_call") == len(outputs)
    assert value(telemetry, "gen_ai_client_token_usage_count", gen_ai_operation_name="chat",
                 gen_ai_provider_name="simulator", gen_ai_request_model=outputs[0]["model"],
                 gen_ai_token_type="input") >= 1

    finished = spans.get_finished_spans()
    agents = [s for s in finished if s.name.startswith("invoke_agent ")]
    chats = [s for s in finished if s.name.startswith("chat ")]
    assert len(agents) == len(outputs) + 1  # the over-budget step is an agent step with no model call
    assert len(chats) == len(outputs)
    by_id = {s.context.span_id: s for s in agents}
    for chat in chats:
        parent = by_id[chat.parent.span_id]  # every model call inside its agent step
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.provider.name"] == "simulator"
        assert chat.name == f"chat {chat.attributes['gen_ai.request.model']}"
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
        assert parent.attributes["agentstream.task_id"].startswith("obs-")
    over = next(s for s in agents if s.attributes["agentstream.task_id"] == "obs-4")
    assert over.attributes["agentstream.status"] == "budget_exceeded"
    assert over.attributes["gen_ai.operation.name"] == "invoke_agent"


def test_a_runner_nobody_watches_makes_no_span_and_counts_nothing() -> None:
    install_simulator()
    off = Telemetry()
    runner = build_runner(RunnerConfig(), observer=off.run_observer())
    run = asyncio.run(runner.run(_task(9)))
    assert run.result["status"] == "ok"
    assert off.metrics is None and not trace.get_current_span().is_recording()


def test_the_trace_context_rides_in_kafka_headers(telemetry: Telemetry) -> None:
    with telemetry.tracer.start_as_current_span("parent") as span:
        headers = with_context([("x-app", b"1"), ("traceparent", b"00-stale-stale-01")])
    names = [n for n, _ in headers]
    assert names.count("traceparent") == 1 and "x-app" in names
    carried = trace.get_current_span(context_of(headers)).get_span_context()
    assert carried.trace_id == span.get_span_context().trace_id
    assert carried.span_id == span.get_span_context().span_id
    assert context_of(None) is None and context_of([("x-app", b"1")]) is None


def _message(topic: str, headers: list[tuple[str, bytes]] | None, offset: int = 7) -> Any:
    return SimpleNamespace(topic=topic, partition=2, offset=offset, headers=headers,
                           timestamp=int(time.time() * 1000) - 250)


def test_a_record_produced_in_a_trace_is_consumed_in_the_same_trace(telemetry: Telemetry,
                                                                    spans: InMemorySpanExporter) -> None:
    assert telemetry.producing(None) is None  # outside any trace: the record goes as it is
    assert Telemetry().producing(None) is None  # observability off
    with telemetry.submitting({"task_id": "t-1", "tenant": "acme"}):
        sending = telemetry.producing([("k", b"v")])
    assert sending is not None and ("k", b"v") in sending.headers
    sending.acked(None)

    async def handle() -> str:
        with telemetry.tracer.start_as_current_span("inside"):
            return "handled"

    assert asyncio.run(telemetry.consume(_message("agent.tasks", sending.headers), handle(), "g-tasks")) == "handled"
    finished = {s.name: s for s in spans.get_finished_spans()}
    submit, process = finished["submit task"], finished["process agent.tasks"]
    assert submit.parent is None and submit.attributes["agentstream.task_id"] == "t-1"
    assert process.parent.span_id == submit.context.span_id  # the hop: the consumer's span under the producer's
    assert process.context.trace_id == submit.context.trace_id
    assert finished["inside"].parent.span_id == process.context.span_id
    assert process.attributes["messaging.consumer.group.name"] == "g-tasks"
    assert process.attributes["messaging.kafka.offset"] == 7
    assert value(telemetry, "agentstream_stage_seconds_count", stage="send") == 1
    assert value(telemetry, "agentstream_stage_seconds_sum", stage="queue_wait") >= 0.25


def test_an_ordered_consumer_passes_the_trace_on_without_a_span_of_its_own(telemetry: Telemetry,
                                                                          spans: InMemorySpanExporter) -> None:
    with telemetry.tracer.start_as_current_span("upstream") as upstream:
        headers = with_context(None)
    with telemetry.consuming(_message("code.changes", headers), "code-tasks"):
        sending = telemetry.producing(None)  # a task made from the change: same trace
    assert sending is not None
    carried = trace.get_current_span(context_of(sending.headers)).get_span_context()
    assert carried.trace_id == upstream.get_span_context().trace_id
    with telemetry.consuming(_message("code.changes", None), "code-tasks"):
        assert telemetry.producing(None) is None  # a record that came with no trace starts none
    assert [s.name for s in spans.get_finished_spans()] == ["upstream"]
    assert value(telemetry, "agentstream_stage_seconds_count", stage="code-tasks") == 2


def test_sink_writes_are_spans_in_each_records_trace(telemetry: Telemetry, spans: InMemorySpanExporter) -> None:
    with telemetry.tracer.start_as_current_span("task") as task_span:
        headers = with_context(None)
    records = [MemoryRecord("TaskResult", {"task_id": f"t-{n}"}, "agent.results", 0, n, 0, None, b"")
               for n in range(3)]
    messages = [_message("agent.results", headers if n < 2 else None, offset=n) for n in range(3)]
    for m in messages:
        m.partition = 0
    started = time.perf_counter()
    telemetry.sink_written("redis", records, [Rejection(records[1], "too big")], started, messages)
    sink = [s for s in spans.get_finished_spans() if s.name == "sink redis"]
    assert sorted(s.attributes["agentstream.task_id"] for s in sink) == ["t-0", "t-1"]  # t-2 came with no trace
    assert {s.parent.span_id for s in sink} == {task_span.get_span_context().span_id}
    assert {s.attributes["agentstream.sink.result"] for s in sink} == {"written", "rejected"}
    assert value(telemetry, "agentstream_sink_records_total", tier="redis", result="written") == 2
    assert value(telemetry, "agentstream_sink_records_total", tier="redis", result="rejected") == 1
    assert value(telemetry, "agentstream_stage_seconds_count", stage="sink-redis") == 1


def test_spans_kept_on_disk_make_a_waterfall(tmp_path: Path) -> None:
    exporter = JsonLinesExporter(tmp_path / "traces" / "worker-1.jsonl", max_bytes=4096)
    provider = TracerProvider(resource=Resource({"service.name": "agentstream-worker"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for n in range(12):  # enough to rotate the 4 KiB file at least once
        with tracer.start_as_current_span("process agent.tasks", attributes={"agentstream.task_id": f"task-{n}"}):
            with tracer.start_as_current_span("invoke_agent coder"):
                with tracer.start_as_current_span("chat simulator/fast-1", attributes={
                        "gen_ai.request.model": "simulator/fast-1", "gen_ai.usage.input_tokens": 12,
                        "gen_ai.usage.output_tokens": 34, "agentstream.cost_usd": 0.0001}):
                    time.sleep(0.002)
    provider.shutdown()
    assert (tmp_path / "traces" / "worker-1.jsonl.1").exists()
    found = traces_of_task(tmp_path, "task-11")
    assert len(found) == 1
    (trace_id, kept), = found.items()
    assert [s.name for s in kept] == ["process agent.tasks", "invoke_agent coder", "chat simulator/fast-1"]
    lines = rows(kept)
    assert [r.depth for r in lines] == [0, 1, 2]
    assert lines[2].duration_ms >= 2 and lines[0].offset_ms == 0
    text = render_text(trace_id, kept)
    assert "tokens=12/34" in text and "cost=$0.0001000" in text and "[worker]" in text
    assert text.index("process agent.tasks") < text.index("    chat simulator/fast-1")
    assert traces_of_task(tmp_path, "task-10") != {} and traces_of_task(tmp_path, "task-99") == {}
    assert traces_of_task(tmp_path, "task-0") == {}  # rotated away: a process keeps at most twice the limit
    assert sum(f.stat().st_size for f in (tmp_path / "traces").iterdir()) <= 2 * 4096 + 2048


def test_processes_are_listed_until_they_exit(tmp_path: Path) -> None:
    settings = Settings(AGENTSTREAM_DATA_DIR=tmp_path, AGENTSTREAM_APP_ID="app-a")
    path = processes.register(settings, "worker", "http://127.0.0.1:1/metrics")
    gone = tmp_path / "processes" / "sinks-999999999.json"
    gone.write_text(json.dumps({"role": "sinks", "pid": 999_999_999, "app_id": "app-a", "metrics_url": "u",
                                "host": socket.gethostname(), "started_at": 0}))
    listed = processes.running(settings, "app-a")
    assert [(e.role, e.pid) for e in listed] == [("worker", os.getpid())]
    assert not gone.exists()  # a killed process's file is cleaned up by the next reader
    assert processes.running(settings, "app-b") == []
    processes.unregister(path)
    assert processes.running(settings) == []


def test_quantiles_and_counter_increases() -> None:
    buckets = {0.1: 50.0, 0.2: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.95, buckets) == pytest.approx(0.19)
    assert quantile(0.5, {float("inf"): 0.0}) is None
    old = Scrape(0.0, [], {1: parse('a_total{x="1"} 5\n'), 2: parse('a_total{x="1"} 9\n')})
    new = Scrape(10.0, [], {1: parse('a_total{x="1"} 8\n'), 2: parse('a_total{x="1"} 2\n'),
                            3: parse('a_total{x="1"} 4\n')})
    # +3 from process 1; process 2 restarted (9 -> 2): 2; process 3 is new: 4
    assert increase(old, new, "a_total", ("x",)) == {("1",): 9.0}


def test_the_sampler_reads_live_endpoints(tmp_path: Path) -> None:
    settings = Settings(AGENTSTREAM_DATA_DIR=tmp_path, AGENTSTREAM_APP_ID="app-s")
    metrics = Metrics()
    url, server = serve_metrics(metrics, "127.0.0.1", 0)
    try:
        processes.register(settings, "worker", url)
        processes.register(settings.model_copy(update={"app_id": "other"}), "sinks", url)
        sampler = Sampler(lambda: processes.running(settings, "app-s"))
        sampler.sample()
        metrics.tasks.labels("ok", "fast").inc(30)
        metrics.tasks.labels("failed", "balanced").inc(2)
        metrics.deadletters.labels("decode").inc()
        metrics.llm_cost.labels("acme", "simulator/fast-1").inc(0.5)
        metrics.lag.labels("app-s-tasks", "agent.tasks", "0").set(1500)
        for seconds in (0.002, 0.004, 0.3):
            metrics.stage_seconds.labels("decode").observe(seconds)
        time.sleep(0.2)
        sampler.sample()
        f = sampler.figures()
    finally:
        server.shutdown()
        server.server_close()
    assert [p["role"] for p in f["processes"]] == ["worker"] and f["processes"][0]["up"]
    assert f["tasks"]["total"] == 32 and f["tasks"]["by_status"] == {"ok": 30, "failed": 2}
    assert f["tasks"]["per_s"] > 30  # 32 tasks within well under a second
    assert f["deadletters"] == {"decode": 1.0}
    assert f["lag"] == [{"group": "app-s-tasks", "topic": "agent.tasks", "partition": 0, "lag": 1500}]
    (decode,) = [s for s in f["stages"] if s["stage"] == "decode"]
    assert decode["count"] == 3 and 1 < decode["p50_ms"] < 5 and decode["window"] == "1m"
    assert f["cost"]["rows"][0]["tenant"] == "acme" and f["cost"]["rows"][0]["per_min_usd"] > 0
    texts = [a["text"] for a in f["alerts"]]
    assert any("dead letter(s) at stage decode" in t for t in texts)
    assert any("app-s-tasks is 1,500 records behind" in t for t in texts)


def test_a_taken_metrics_port_falls_back_to_a_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        url, server = serve_metrics(Metrics(), "127.0.0.1", port)
        try:
            assert url.startswith("http://127.0.0.1:") and f":{port}/" not in url
        finally:
            server.shutdown()
            server.server_close()


def test_the_bench_reads_its_cost_from_adjacent_pairs() -> None:
    from streams.bench.observability import ObservabilityCost, Round

    cost = ObservabilityCost(on=[Round(90, 11.0), Round(40, 22.0), Round(95, 10.5)],
                             off=[Round(100, 10.0), Round(40, 20.0), Round(95, 10.0)])
    assert cost.rate_share == pytest.approx(0.0)  # pairs: 10%, 0%, 0% -> median 0%
    assert cost.cpu_share == pytest.approx(0.1)  # pairs: +10%, +10%, +5% -> median +10%
