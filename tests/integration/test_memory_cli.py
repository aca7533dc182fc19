"""`agentstream memory search|stats` and the memory benchmark's code path, on the real stack."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from memory_helpers import result, run_id, wrap

from streams.bench.memory import memory_bench
from streams.cli.main import cli
from streams.memory.tiers import build_tiers
from streams.settings import Settings

pytestmark = pytest.mark.integration


def test_memory_search_and_stats_commands(stack_settings: Settings) -> None:
    settings = stack_settings.isolated(f"t{run_id()}")
    tiers = build_tiers(settings)
    batch = [wrap("TaskResult", result("c1", "Added a circuit breaker to the inventory service client")),
             wrap("TaskResult", result("c2", "Wrote the onboarding guide for new support staff"))]
    for tier in tiers.values():
        tier.setup()
        tier.write(batch)
    env = {k: v for k, v in settings.as_env().items()}
    runner = CliRunner()
    out = runner.invoke(cli, ["memory", "search", "circuit breaker for a flaky client", "-k", "1"], env=env)
    assert out.exit_code == 0, out.output
    assert "TaskResult:c1" in out.output and "from l2" in out.output
    out = runner.invoke(cli, ["memory", "search", "circuit breaker for a flaky client", "-k", "1", "--json"], env=env)
    first = json.loads(out.output.splitlines()[0])
    assert first["id"] == "TaskResult:c1" and first["tier"] == "l1"  # the same search again: cached
    out = runner.invoke(cli, ["memory", "stats", "--json"], env=env)
    stats = json.loads(out.output)
    assert stats["l2_vectors"] == 2 and stats["l3_rows"]["memory_tasks"] == 2 and stats["l1_keys"] == 2
    assert stats["retrieval"]["searches"] == 2 and stats["retrieval"]["l1"]["hits"] == 1
    out = runner.invoke(cli, ["memory", "stats"], env=env)
    assert out.exit_code == 0 and "L2 vectors" in out.output and "l1" in out.output


def test_memory_commands_say_when_the_stack_is_down(stack_settings: Settings) -> None:
    from streams.devstack import free_port

    env = {**stack_settings.as_env(), "AGENTSTREAM_POSTGRES_PORT": str(free_port())}
    out = CliRunner().invoke(cli, ["memory", "stats"], env=env)
    assert out.exit_code == 1 and "unavailable" in out.output and "agentstream up" in out.output


def test_the_memory_benchmark_runs_end_to_end(l2_settings: Settings) -> None:
    """The code path of `make bench`'s memory figures, at a tiny size (figures are not checked); with a
    Weaviate configured, L2 is measured on both backends."""
    rows = memory_bench(l2_settings, records=40, searches=4)
    both = l2_settings.weaviate_url is not None
    assert [r.split("|")[1].strip() for r in rows] == [
        "embedding, integer (in use)", "embedding, float32",
        "sink write, redis", "sink write, vectors L2, pgvector", "sink write, postgres", "sink write, archive",
        *(["sink write, vectors L2, weaviate"] if both else []), "retrieval, cold (L2 pgvector/L3)",
        *(["retrieval, cold (L2 weaviate/L3)"] if both else []), "retrieval, cached (L1)"]
