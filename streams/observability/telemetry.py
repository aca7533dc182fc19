"""The one object the pipeline reports to: `telemetry`, a process-wide facade over the metrics and the tracer.

The stages call it in one line each (a task done, a record dead-lettered, a batch written, a record
consumed or produced); it does nothing until `streams.observability.start` enables it, and nothing
when AGENTSTREAM_OBSERVABILITY=false. Spans follow the OpenTelemetry messaging and GenAI conventions;
their names and attributes are listed in docs/observability.md.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NoOpTracer, SpanKind, StatusCode, Tracer

from agents.clock import now_ms
from agents.observer import ModelCall, RunObserver, provider_of
from schemas.events import tenant_of
from streams.observability.propagation import Headers, context_of, with_context

if TYPE_CHECKING:  # prometheus_client is loaded by the process that turns metrics on, not by every importer
    from streams.observability.metrics import Metrics

__all__ = ["Produce", "Telemetry", "telemetry"]

T = TypeVar("T")


def _messaging(message: Any, operation: str) -> dict[str, Any]:
    return {"messaging.system": "kafka", "messaging.operation.type": operation,
            "messaging.destination.name": message.topic,
            "messaging.destination.partition.id": str(message.partition), "messaging.kafka.offset": message.offset}


class Produce:
    """One record being produced inside a trace: the headers carrying the trace, and when it was sent.

    No span of its own: the consumer's span is a child of the span that produced the record (the
    task's, the submit's), which keeps a task's trace at a few spans (docs/observability.md, Cost)."""

    __slots__ = ("headers", "metrics", "started")

    def __init__(self, headers: list[tuple[str, bytes]], metrics: Metrics) -> None:
        self.headers, self.metrics, self.started = headers, metrics, time.perf_counter()

    def acked(self, _future: Any) -> None:
        """The broker answered (or the send failed): time the send and confirm, stage `send`."""
        self.metrics.stage_seconds.labels("send").observe(time.perf_counter() - self.started)


class _Observer(RunObserver):
    """The agents' hooks, counted (and traced with this process's tracer)."""

    def __init__(self, metrics: Metrics, tracer: Tracer) -> None:
        super().__init__(tracer)
        self.m = metrics

    def model_call(self, call: ModelCall) -> None:
        m = self.m
        m.llm_calls.labels(call.model, call.outcome).inc()
        m.stage_seconds.labels("model_call").observe(call.latency_s)
        provider = provider_of(call.model)
        m.genai_duration.labels("chat", provider, call.model, "" if call.outcome == "ok" else call.outcome).observe(
            call.latency_s)
        if call.outcome != "ok":
            return
        m.llm_tokens.labels(call.model, "input").inc(call.tokens_in)
        m.llm_tokens.labels(call.model, "output").inc(call.tokens_out)
        m.llm_cost.labels(call.tenant, call.model).inc(call.cost_usd)
        m.genai_tokens.labels("chat", provider, call.model, "input").observe(call.tokens_in)
        m.genai_tokens.labels("chat", provider, call.model, "output").observe(call.tokens_out)

    def budget_event(self, tenant: str, event: str) -> None:
        self.m.budget_events.labels(tenant, event).inc()

    def calls_in_flight(self, delta: int) -> None:
        self.m.llm_in_flight.inc(delta)


class Telemetry:
    """Metrics and spans of this process; every method is a no-op until `enable`."""

    def __init__(self) -> None:
        self.enabled = False
        self.metrics: Metrics | None = None
        self.tracer: Tracer = NoOpTracer()

    def enable(self, metrics: Metrics, tracer: Tracer) -> None:
        self.metrics, self.tracer, self.enabled = metrics, tracer, True

    def disable(self) -> None:
        self.enabled, self.metrics, self.tracer = False, None, NoOpTracer()

    def run_observer(self) -> RunObserver:
        """What the task runner reports model calls and budget events to."""
        return _Observer(self.metrics, self.tracer) if self.enabled and self.metrics else RunObserver()

    # -- consuming -------------------------------------------------------------------------

    def consume(self, message: Any, work: Coroutine[Any, Any, T], group: str) -> Awaitable[T]:
        """`work` (the handling of `message`) in a `process {topic}` span continuing the record's trace,
        after timing how long the record waited since it was produced (stage queue_wait)."""
        if not self.enabled:
            return work
        return self._consume(message, work, group)

    async def _consume(self, message: Any, work: Coroutine[Any, Any, T], group: str) -> T:
        try:
            assert self.metrics is not None
            self.metrics.stage_seconds.labels("queue_wait").observe(max(0.0, time.time() - message.timestamp / 1000))
            attributes = {**_messaging(message, "process"), "messaging.consumer.group.name": group}
            with self.tracer.start_as_current_span(f"process {message.topic}", context=context_of(message.headers),
                                                   kind=SpanKind.CONSUMER, attributes=attributes):
                return await work
        finally:
            work.close()  # never started (cancelled first): closed without a "never awaited" warning

    @contextlib.contextmanager
    def consuming(self, message: Any, stage: str) -> Iterator[None]:
        """A record handled by an ordered consumer (prompt judge, scoring, code changes): what it produces
        continues the record's trace, and the handling is timed as `stage`. No span: most of these records
        (every output, for the judge) need nothing done, and a span each would cost more than the work."""
        if not self.enabled:
            yield
            return
        assert self.metrics is not None
        started = time.perf_counter()
        carried = context_of(message.headers)
        token = otel_context.attach(carried) if carried is not None else None
        try:
            yield
        finally:
            if token is not None:
                otel_context.detach(token)
            self.metrics.stage_seconds.labels(stage).observe(time.perf_counter() - started)

    # -- the task stage ----------------------------------------------------------------------

    def task_done(self, task: dict[str, Any], result: dict[str, Any]) -> None:
        """A task's result is on the broker: count it, time it from its created_at, describe its span."""
        if not self.enabled:
            return
        assert self.metrics is not None
        meta = result.get("metadata") or {}
        pattern = meta.get("pattern", "")
        self.metrics.tasks.labels(result["status"], pattern).inc()
        self.metrics.task_seconds.observe(max(0.0, (now_ms() - int(task.get("created_at") or 0)) / 1000.0))
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({"agentstream.task_id": result["task_id"], "agentstream.tenant": result["tenant"],
                                 "agentstream.pattern": pattern, "agentstream.status": result["status"],
                                 "agentstream.cost_usd": float(result["cost_usd"]),
                                 "gen_ai.usage.input_tokens": int(result["tokens_in"]),
                                 "gen_ai.usage.output_tokens": int(result["tokens_out"]),
                                 "agentstream.steps": int(result["steps"])})

    def decoded(self, started: float) -> None:
        """A record decoded, from `started` (a perf_counter reading) until now."""
        if self.enabled:
            assert self.metrics is not None
            self.metrics.stage_seconds.labels("decode").observe(time.perf_counter() - started)

    def dead_letter(self, stage: str) -> None:
        if self.enabled:
            assert self.metrics is not None
            self.metrics.deadletters.labels(stage).inc()
            trace.get_current_span().set_status(StatusCode.ERROR, f"dead letter at {stage}")

    def memory_recalled(self, result: Any, k: int, started: float) -> None:
        """A recall for a task (`result`: a sinks.retrieval.SearchResult, None when it failed): each tier
        consulted counts a hit or a miss, the time is the memory_recall stage, and a span says so."""
        if not self.enabled:
            return
        assert self.metrics is not None
        seconds = time.perf_counter() - started
        m = self.metrics
        m.stage_seconds.labels("memory_recall").observe(seconds)
        if result is None:
            m.memory_lookups.labels("all", "error").inc()
        elif result.tier == "l1":
            m.memory_lookups.labels("l1", "hit").inc()
        else:
            found = result.by_tier
            m.memory_lookups.labels("l1", "miss").inc()
            m.memory_lookups.labels("l2", "hit" if found.get("l2") else "miss").inc()
            if found.get("l3") or found.get("l2", 0) < k:  # L3 fills what L2 did not find
                m.memory_lookups.labels("l3", "hit" if found.get("l3") else "miss").inc()
        end = time.time_ns()
        span = self.tracer.start_span("memory recall", start_time=end - int(seconds * 1e9), attributes={
            "agentstream.memory.tier": "error" if result is None else result.tier,
            "agentstream.memory.count": 0 if result is None else len(result.memories)})
        span.end(end_time=end)

    def experiment_decision(self, decision: str) -> None:
        if self.enabled:
            assert self.metrics is not None
            self.metrics.experiment_decisions.labels(decision).inc()

    # -- sinks -------------------------------------------------------------------------------

    def sink_written(self, tier: str, records: Sequence[Any], rejected: Sequence[Any], started: float,
                     messages: Sequence[Any]) -> None:
        """A sink wrote `records` to `tier` (`rejected` refused), from `started` (perf_counter) until now: a
        `sink {tier}` span in each record's trace, the records counted, the time as stage `sink-{tier}`."""
        if not self.enabled:
            return
        assert self.metrics is not None
        seconds = time.perf_counter() - started
        self.metrics.sink_records.labels(tier, "written").inc(len(records) - len(rejected))
        if rejected:
            self.metrics.sink_records.labels(tier, "rejected").inc(len(rejected))
        self.metrics.stage_seconds.labels(f"sink-{tier}").observe(seconds)
        carried = {(m.topic, m.partition, m.offset): m.headers for m in messages if m.headers}
        if not carried:
            return
        end = time.time_ns()
        start = end - int(seconds * 1e9)
        refused = {id(r.record) for r in rejected}
        for record in records:
            context = context_of(carried.get((record.topic, record.partition, record.offset)))
            if context is None:
                continue
            attributes = {**_messaging(record, "process"), "agentstream.sink.tier": tier,
                          "agentstream.sink.result": "rejected" if id(record) in refused else "written"}
            if task_id := (record.record or {}).get("task_id"):
                attributes["agentstream.task_id"] = task_id
            span = self.tracer.start_span(f"sink {tier}", context=context, kind=SpanKind.CONSUMER, start_time=start,
                                          attributes=attributes)
            span.end(end_time=end)

    # -- producing ---------------------------------------------------------------------------

    def producing(self, headers: Headers | None) -> Produce | None:
        """A record about to be produced inside a trace: its headers with the current trace context. None
        outside any trace (or when off): the record goes as it is."""
        if not self.enabled or not trace.get_current_span().get_span_context().is_valid:
            return None
        assert self.metrics is not None
        return Produce(with_context(headers), self.metrics)

    @contextlib.contextmanager
    def submitting(self, task: dict[str, Any]) -> Iterator[None]:
        """A task handed to Kafka by `agentstream submit` (or any client of streams.client): the root of
        its trace, so the records it leads to carry the same trace."""
        if not self.enabled:
            yield
            return
        with self.tracer.start_as_current_span("submit task", context=Context(), kind=SpanKind.PRODUCER, attributes={
                "agentstream.task_id": task["task_id"], "agentstream.tenant": tenant_of(task),
                "agentstream.pattern": task.get("pattern") or "fast"}):
            yield


telemetry = Telemetry()
