"""Observability switched on in a process: the tracer provider, the /metrics endpoint, the process
file that lists it, and the consumer-lag monitor; all stopped (spans flushed) when the process exits."""

from __future__ import annotations

import atexit
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from streams.logs import get_logger
from streams.observability.lag import Lag, LagMonitor
from streams.observability.metrics import Metrics
from streams.observability.processes import register, unregister
from streams.observability.telemetry import telemetry
from streams.observability.tracing import tracer_provider
from streams.settings import Settings

__all__ = ["Observability", "serve_metrics", "start"]

log = get_logger(__name__)


@dataclass
class Observability:
    """What `start` set up in this process."""

    role: str
    metrics: Metrics
    provider: Any  # opentelemetry.sdk.trace.TracerProvider
    trace_file: Path
    metrics_url: str | None = None
    process_file: Path | None = None
    monitor: LagMonitor | None = None
    server: Any = None
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop the monitor and the endpoint, flush the spans, remove the process file (once)."""
        if self._stopped:
            return
        self._stopped = True
        if self.process_file is not None:
            unregister(self.process_file)
        if self.monitor is not None:
            self.monitor.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self.provider.shutdown()
        telemetry.disable()


_current: Observability | None = None


def serve_metrics(metrics: Metrics, host: str, port: int) -> tuple[str, Any]:
    """Serve /metrics on `host:port` in a thread; a port already taken falls back to a free one."""
    try:
        server, _ = start_http_server(port, host, metrics.registry)
    except OSError as exc:
        if port == 0:
            raise
        log.warning("metrics port taken; serving on a free port", stage="metrics", port=port, error=str(exc))
        server, _ = start_http_server(0, host, metrics.registry)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{server.server_port}/metrics", server


def start(settings: Settings, role: str, *, serve: bool = True) -> Observability | None:
    """Metrics and traces for this process as `role` (worker, sinks, submit, ...); None when turned off.

    `serve`: a long-running process (a worker, the sinks) also serves /metrics, lists itself under the
    data folder and reports the lag of its consumer groups; a command (submit) only traces."""
    global _current
    if not settings.observability:
        return None
    if _current is not None:
        return _current
    metrics = Metrics()
    provider, trace_file = tracer_provider(settings, role)
    telemetry.enable(metrics, provider.get_tracer("agentstream"))
    obs = Observability(role, metrics, provider, trace_file)
    if serve:
        obs.metrics_url, obs.server = serve_metrics(metrics, settings.metrics_host, settings.metrics_port)
        obs.process_file = register(settings, role, obs.metrics_url)

        def set_lag(lag: Lag) -> None:
            for (group, topic, partition), value in lag.items():
                metrics.lag.labels(group, topic, str(partition)).set(value)

        obs.monitor = LagMonitor(settings, set_lag).start()
        log.info("observability on", stage="metrics", role=role, metrics=obs.metrics_url, traces=str(trace_file))
    _current = obs
    atexit.register(obs.stop)
    return obs
