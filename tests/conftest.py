"""Test-wide set-up: no real model or network calls, and one real local stack per session.

The stack is started by the same code as `agentstream up`, in a fresh data folder on free ports,
so tests never touch a user's running stack and two test sessions can run side by side.
"""

from __future__ import annotations

import os

# Only the simulator may answer: any real outbound HTTP call goes to a closed local port and fails.
for _key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY"):
    os.environ.pop(_key, None)
os.environ.update({"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                   "NO_PROXY": "127.0.0.1,localhost", "LITELLM_LOCAL_MODEL_COST_MAP": "True"})

import shutil  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from streams.settings import Settings  # noqa: E402


def _stack_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="agentstream-test-"))
    path.chmod(0o755)  # the embedded PostgreSQL runs as an unprivileged user and must traverse it
    return path


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Settings of a real local stack (Kafka, PostgreSQL, Redis, S3 API) started for this session."""
    from streams.devstack import LocalStack, free_ports

    data_dir = _stack_dir()
    kafka, controller, postgres, redis, s3 = free_ports(5)
    settings = Settings(
        AGENTSTREAM_DATA_DIR=data_dir,
        AGENTSTREAM_KAFKA_PORT=kafka,
        AGENTSTREAM_KAFKA_CONTROLLER_PORT=controller,
        AGENTSTREAM_POSTGRES_PORT=postgres,
        AGENTSTREAM_REDIS_PORT=redis,
        AGENTSTREAM_S3_PORT=s3,
        AGENTSTREAM_PARTITIONS=4,
        AGENTSTREAM_LOG_FORMAT="json",
        AGENTSTREAM_TOOLS_ENABLED=False,  # workers start no MCP servers unless a test asks (tests/*/test_tools*.py)
    )
    stack = LocalStack(settings, with_s3=True)
    stack.up()
    try:
        yield settings
    finally:
        stack.down()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def weaviate_server() -> Iterator[Settings]:
    """One embedded Weaviate for the session, in a data folder of its own (so workers on the session stack's
    folder keep pgvector unless a test sets WEAVIATE_URL); built with `go install` first if needed."""
    from weaviate_helpers import weaviate_missing, weaviate_ports

    from streams.devstack.weaviate import WeaviatePart

    reason = weaviate_missing()
    if reason:
        pytest.skip(reason)

    data_dir = _stack_dir()
    settings = Settings(AGENTSTREAM_DATA_DIR=data_dir, **weaviate_ports())
    part = WeaviatePart(settings, data_dir)
    part.up()
    try:
        yield settings.model_copy(update={"weaviate_url": part.address,
                                          "weaviate_grpc_port": settings.weaviate_local_grpc_port})
    finally:
        part.down()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(params=["pgvector", "weaviate"])
def l2_settings(request: pytest.FixtureRequest, stack_settings: Settings) -> Settings:
    """The session stack with L2 on pgvector, then on the session's Weaviate (the tests that matter for L2)."""
    if request.param == "pgvector":
        return stack_settings
    server: Settings = request.getfixturevalue("weaviate_server")
    return stack_settings.model_copy(update={"weaviate_url": server.weaviate_url,
                                             "weaviate_grpc_port": server.weaviate_grpc_port})


@pytest.fixture
def isolated(stack_settings: Settings) -> Settings:
    """The session stack with a topic prefix and app id of this test's own, so tests never collide."""
    return stack_settings.isolated(f"t{uuid.uuid4().hex[:8]}")
