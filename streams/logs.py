"""structlog set-up: JSON lines for machines, readable lines on a terminal.

Every log line that concerns a record carries `stage`, the same name a dead letter would carry.
Every string in a line is redacted (agents/redaction.py) before it is written.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from agents.redaction import redact, redact_values
from streams.settings import Settings

__all__ = ["configure_logging", "get_logger"]


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Configure structlog (and quiet the chatty libraries) once, at the entry point."""
    out = stream or sys.stderr
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer = structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    level = logging.getLevelName(settings.log_level.upper())
    level = level if isinstance(level, int) else logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redacted,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard library; keep their noise at warning level.
    logging.basicConfig(stream=out, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("aiokafka", "kafka", "LiteLLM", "litellm", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _redacted(_logger: object, _method: str, event: dict[str, object]) -> dict[str, object]:
    """A log line's strings (the message, fields, a formatted traceback) with credentials redacted."""
    return redact_values(event) | {k: [redact(x) if isinstance(x, str) else x for x in v]
                                   for k, v in event.items() if isinstance(v, list)}


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
