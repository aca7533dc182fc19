"""The chaos suite's own stack: three Kafka nodes (replication 3, min.insync.replicas 2), PostgreSQL and
Redis, in a fresh folder on free ports. Set AGENTSTREAM_CHAOS_KEEP=1 to keep the folder (logs) afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.devstack import LocalStack, free_port_range, free_ports
from streams.settings import Settings


@pytest.fixture(scope="session")
def chaos_stack() -> Iterator[LocalStack]:
    data_dir = Path(tempfile.mkdtemp(prefix="agentstream-chaos-"))
    data_dir.chmod(0o755)  # the embedded PostgreSQL runs as an unprivileged user and must traverse it
    first = free_port_range(6)
    postgres, redis = free_ports(2)
    settings = Settings(
        AGENTSTREAM_DATA_DIR=data_dir, AGENTSTREAM_KAFKA_PORT=first, AGENTSTREAM_KAFKA_CONTROLLER_PORT=first + 1,
        AGENTSTREAM_KAFKA_BROKERS=3, AGENTSTREAM_REPLICATION_FACTOR=3, AGENTSTREAM_POSTGRES_PORT=postgres,
        AGENTSTREAM_REDIS_PORT=redis, AGENTSTREAM_PARTITIONS=6, AGENTSTREAM_LOG_FORMAT="json",
        # Every event fits L1, so Redis must hold one key per unique event.
        AGENTSTREAM_MEMORY_MAX_VALUE_BYTES=1_000_000,
    )
    stack = LocalStack(settings)
    print(f"\nchaos stack in {data_dir}", flush=True)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        if os.environ.get("AGENTSTREAM_CHAOS_KEEP") != "1":
            shutil.rmtree(data_dir, ignore_errors=True)
