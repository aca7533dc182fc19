"""This process's OpenTelemetry tracer provider: every span kept in a local JSON-lines file, and exported
by OTLP/HTTP as well when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from streams.observability.spanstore import JsonLinesExporter, traces_dir
from streams.settings import Settings

__all__ = ["otlp_traces_url", "tracer_provider"]

# Spans wait at most a second before they are written (a trace is readable soon after its task ends);
# a large queue so a burst of tasks does not drop spans.
_BATCH = {"schedule_delay_millis": 1000, "max_queue_size": 65536, "max_export_batch_size": 2048}


def otlp_traces_url(endpoint: str) -> str:
    """The traces URL of an OTLP/HTTP collector's base URL (the OTEL_EXPORTER_OTLP_ENDPOINT rule)."""
    return endpoint.rstrip("/") + "/v1/traces"


def tracer_provider(settings: Settings, role: str) -> tuple[TracerProvider, Path]:
    """A provider whose spans name this process (service `agentstream-<role>`); and its local span file."""
    resource = Resource({"service.name": f"agentstream-{role}",
                         "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
                         "agentstream.app_id": settings.app_id})
    provider = TracerProvider(resource=resource)
    path = traces_dir(settings.data_dir.expanduser().resolve()) / f"{role}-{os.getpid()}.jsonl"
    exporter = JsonLinesExporter(path, int(settings.trace_file_mb * 1024 * 1024))
    provider.add_span_processor(BatchSpanProcessor(exporter, **_BATCH))  # type: ignore[arg-type]
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # only when asked for

        otlp = OTLPSpanExporter(endpoint=otlp_traces_url(settings.otlp_endpoint))
        provider.add_span_processor(BatchSpanProcessor(otlp, **_BATCH))  # type: ignore[arg-type]
    return provider, path
