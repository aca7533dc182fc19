"""Log lines: credentials are redacted in the message and in every field before a line is written."""

from __future__ import annotations

import io
import json
import logging
import random

import structlog
from redaction_corpus import secrets

from streams.logs import configure_logging, get_logger
from streams.settings import Settings


def test_log_lines_are_redacted() -> None:
    (_, text, secret), (_, field, secret2), (_, listed, secret3) = secrets(random.Random(11))[:3]
    out, root = io.StringIO(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging(Settings(AGENTSTREAM_LOG_FORMAT="json"), out)
        get_logger("test.logs.redaction").warning(f"failed on {text}", error=field, items=[listed], n=3)
        line = json.loads(out.getvalue().strip().splitlines()[-1])
    finally:
        structlog.reset_defaults()
        root.handlers[:], root.level = handlers, level
    assert secret not in str(line) and secret2 not in str(line) and secret3 not in str(line)
    assert line["event"].startswith("failed on ") and "[REDACTED:" in line["error"] and line["n"] == 3
