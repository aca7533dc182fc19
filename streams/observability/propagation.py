"""The W3C trace context in Kafka record headers: `traceparent` (and `tracestate`) written on produce,
read on consume, so one trace follows a task across processes and topics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["TRACEPARENT", "Headers", "context_of", "with_context"]

TRACEPARENT = "traceparent"
Headers = Sequence[tuple[str, bytes]]

_PROPAGATOR = TraceContextTextMapPropagator()
_FIELDS = frozenset(_PROPAGATOR.fields)


class _KafkaHeaders(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        found = [value.decode("latin-1") for name, value in carrier if name == key and value is not None]
        return found or None

    def keys(self, carrier: Headers) -> list[str]:
        return [name for name, _ in carrier]


_GETTER = _KafkaHeaders()


def context_of(headers: Headers | None) -> Context | None:
    """The trace context a record carries, or None (no header: whatever handles it starts a trace)."""
    if not headers or not any(name == TRACEPARENT for name, _ in headers):
        return None
    return _PROPAGATOR.extract(headers, getter=_GETTER)


def with_context(headers: Iterable[tuple[str, bytes]] | None,
                 context: Context | None = None) -> list[tuple[str, bytes]]:
    """`headers` with the trace context of `context` (default: the current one) in place of any they had."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    kept = [(name, value) for name, value in headers or () if name not in _FIELDS]
    return kept + [(name, value.encode("latin-1")) for name, value in carrier.items()]
