"""Observability (issue 13): Prometheus metrics, OpenTelemetry traces across Kafka hops, the dashboard
and `agentstream top`. The pipeline reports to `telemetry.telemetry` (one line per stage); an entry
point turns it on with `runtime.start`. docs/observability.md lists every metric and span.

Nothing is imported here: streams/kafka.py imports the light modules (telemetry, lag) and must not
pay for the SDK and its exporters, which only `runtime.start` loads."""
