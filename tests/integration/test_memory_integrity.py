"""`agentstream memory verify|restore` on the real stack: tiers tampered with in PostgreSQL, Redis and the
vectors are reported exactly, an alert is raised, and a restore from the archive makes them clean again."""

from __future__ import annotations

import asyncio
import json

import psycopg
import pytest
import redis
from click.testing import CliRunner
from memory_helpers import output, result, run_id

from agents.clock import now_ms
from schemas import default_codec
from sinks.base import MemoryRecord
from streams.cli.main import cli
from streams.client import read_topic
from streams.memory.tiers import build_archive, build_tiers
from streams.settings import Settings
from streams.topics import ALERTS, OUTPUTS, RESULTS

pytestmark = pytest.mark.integration

codec = default_codec()


def _events(settings: Settings) -> list[MemoryRecord]:
    """Three results and three outputs, fresh (L1 keeps them), as the sinks get them from the topics."""
    items = []
    for n in range(3):
        for offset, (topic, event_type, record) in enumerate([
                (RESULTS, "TaskResult", result(f"r{n}", f"Result {n}: added retries to the payment client")),
                (OUTPUTS, "AgentOutput", output(f"r{n}", f"Step of task {n}: wrote the retry loop"))]):
            record = {**record, "created_at": now_ms()}
            items.append(MemoryRecord(event_type, record, settings.topic(topic), 0, n * 2 + offset, now_ms(),
                                      record["task_id"].encode(), codec.encode(event_type, record)))
    return items


def _verify(runner: CliRunner, env: dict[str, str], *args: str) -> tuple[int, dict[str, dict]]:
    out = runner.invoke(cli, ["memory", "verify", "--json", *args], env=env)
    assert out.exit_code in (0, 1), out.output
    lines = [json.loads(line) for line in out.output.splitlines() if line.startswith("{")]
    return out.exit_code, {r["tier"]: r for r in lines if "checked" in r}  # (the alert's log line is JSON too)


def test_verify_reports_exactly_what_was_changed_and_restore_makes_it_clean(stack_settings: Settings) -> None:
    settings = stack_settings.isolated(f"t{run_id()}")
    env = dict(settings.as_env())
    events = _events(settings)
    tiers = build_tiers(settings)
    for tier in [*tiers.values(), build_archive(settings)]:
        tier.setup()
        tier.write(events)  # what the memory and archive sinks do with these records
    runner = CliRunner()
    code, clean = _verify(runner, env)
    assert code == 0 and all(r["missing"] == r["changed"] == r["extra"] == [] for r in clean.values())
    assert clean["l3"]["checked"] == 6 and clean["l2"]["checked"] == 3 and clean["l1"]["checked"] == 6

    scope = settings.topic_prefix
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE memory_tasks SET output = 'tampered' WHERE scope = %s AND task_id = 'r0'", (scope,))
        conn.execute("DELETE FROM memory_steps WHERE scope = %s AND task_id = 'r1'", (scope,))
        conn.execute("DELETE FROM memory_vectors WHERE scope = %s AND event_id = 'TaskResult:r2'", (scope,))
    keys = redis.Redis.from_url(settings.redis_dsn)
    assert keys.delete(f"{scope}mem:event:TaskResult:r1") == 1
    keys.close()

    code, found = _verify(runner, env)
    assert code == 1
    assert (found["l3"]["changed"], found["l3"]["missing"], found["l3"]["extra"]) == (
        ["TaskResult:r0"], ["AgentOutput:r1:1:1"], [])
    assert (found["l1"]["changed"], found["l1"]["missing"], found["l1"]["extra"]) == ([], ["TaskResult:r1"], [])
    assert (found["l2"]["changed"], found["l2"]["missing"], found["l2"]["extra"]) == ([], ["TaskResult:r2"], [])
    code, only_l2 = _verify(runner, env, "--tier", "l2")
    assert code == 1 and set(only_l2) == {"l2"}

    async def alerts() -> list[dict]:
        return [r.record async for r in read_topic(settings, codec, settings.topic(ALERTS), from_beginning=True,
                                                   idle_timeout_s=1.0)]
    raised = [a for a in asyncio.run(alerts()) if a["kind"] == "memory_integrity"]
    assert raised and raised[0]["details"]["l3_changed"] == "1" and raised[0]["details"]["l1_missing"] == "1"

    out = runner.invoke(cli, ["memory", "restore"], env=env)
    assert out.exit_code == 0, out.output
    assert "after restore, l3: 0 missing, 0 changed" in out.output
    code, restored = _verify(runner, env)
    assert code == 0 and all(r["missing"] == r["changed"] == r["extra"] == [] for r in restored.values())
    again = runner.invoke(cli, ["memory", "restore"], env=env)  # idempotent: nothing left to write
    assert again.exit_code == 0 and "l3: 6 checked, 0 missing, 0 changed, 0 extra\n" in again.output
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT output FROM memory_tasks WHERE scope = %s AND task_id = 'r0'",
                            (scope,)).fetchone()[0].startswith("Result 0")
        conn.execute("INSERT INTO memory_tasks SELECT scope, 'stranger', status, output, model, cost_usd, latency_ms, "
                     "steps, tokens_in, tokens_out, tenant, error, metadata, created_at FROM memory_tasks "
                     "WHERE scope = %s AND task_id = 'r0'", (scope,))
    code, extra = _verify(runner, env, "--tier", "l3")
    assert code == 1 and extra["l3"]["extra"] == ["TaskResult:stranger"] and extra["l3"]["missing"] == []
    for tier in tiers.values():
        tier.close()
