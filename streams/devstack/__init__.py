"""The embedded local stack: Kafka, PostgreSQL (+pgvector), Redis and an optional S3 API on loopback.

`LocalStack(settings).up()` starts what is missing; parts whose URL is set in the settings are
external and never started. `free_port()` is for test suites that need their own ports.
"""

from __future__ import annotations

from streams.devstack.process import PartStatus, StackError, free_port, free_ports
from streams.devstack.stack import LocalStack

__all__ = ["LocalStack", "PartStatus", "StackError", "free_port", "free_ports"]
