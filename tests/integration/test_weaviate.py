"""The Weaviate backend of L2 against the session's embedded Weaviate (skipped, saying why, without Go 1.25+)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from memory_helpers import result, run_id, wrap
from weaviate_helpers import weaviate_missing, weaviate_ports

from sinks.vectors import VectorTier
from sinks.weaviate_tier import WeaviateStore
from streams.memory.tiers import embedder
from streams.settings import Settings

pytestmark = pytest.mark.integration


def test_weaviate_store_is_idempotent_and_searches_with_filters(weaviate_server: Settings) -> None:
    assert weaviate_server.weaviate_url is not None
    store = WeaviateStore(weaviate_server.weaviate_url, grpc_port=weaviate_server.weaviate_grpc_port,
                          collection=f"AgentstreamTest{run_id()}", scope="test.")
    tier = VectorTier(store, embedder(), scope="test.")
    tier.setup()
    try:
        batch = [wrap("TaskResult", result("w1", "Added retries with backoff to the HTTP client", tenant="a")),
                 wrap("TaskResult", result("w2", "Documented the credential rotation runbook", tenant="b"))]
        tier.write(batch)
        tier.write(batch)
        assert tier.count() == 2
        hits = tier.search("retry HTTP calls", 2)
        assert hits[0].task_id == "w1" and hits[0].extra["model"] == embedder().name
        assert [h.task_id for h in tier.search("retry HTTP calls", 2, {"tenant": "b"})] == ["w2"]
        assert "w1" not in [h.task_id for h in tier.search("retry HTTP calls", 2, {"exclude_tasks": ["w1"]})]
    finally:
        store._connect().collections.delete(store.collection_name)
        tier.close()


def test_up_with_weaviate_starts_it_and_every_later_command_of_the_folder_uses_it(stack_settings: Settings) -> None:
    """`up --with-weaviate` (the other parts external: the session's), then `settings`, `status`, `down`."""
    reason = weaviate_missing()
    if reason:
        pytest.skip(reason)
    from streams.cli.main import cli

    data_dir = Path(tempfile.mkdtemp(prefix="agentstream-weaviate-up-"))
    env = {"AGENTSTREAM_DATA_DIR": str(data_dir), "KAFKA_BOOTSTRAP_SERVERS": stack_settings.kafka_servers,
           "DATABASE_URL": stack_settings.postgres_dsn, "REDIS_URL": stack_settings.redis_dsn,
           "AGENTSTREAM_TOPIC_PREFIX": f"t{run_id()}.", "WEAVIATE_URL": None,
           **{k: str(v) for k, v in weaviate_ports().items()}}
    address = f"http://127.0.0.1:{env['AGENTSTREAM_WEAVIATE_PORT']}"

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    try:
        up = run("up", "--with-weaviate")
        assert f"weaviate  {address}" in up and f"WEAVIATE_URL={address}" in up
        assert "running" in next(line for line in up.splitlines() if line.startswith("weaviate  http"))
        shown = run("settings")
        assert f"weaviate_url             {address}" in shown
        assert f"weaviate_grpc_port       {env['AGENTSTREAM_WEAVIATE_LOCAL_GRPC_PORT']}" in shown
        assert next(line for line in run("status").splitlines() if line.startswith("weaviate")).endswith("running")
    finally:
        down = run("down")
        after = run("settings")
        shutil.rmtree(data_dir, ignore_errors=True)
    assert next(line for line in down.splitlines() if line.startswith("weaviate")).endswith("stopped")
    assert "weaviate_url             None" in after  # stopped: the folder's commands are back on pgvector
