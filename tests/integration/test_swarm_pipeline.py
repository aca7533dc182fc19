"""Swarm patterns and tenant budgets through a real worker on the real local stack."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from group_helpers import wait_for_stable_group

from agents.clock import now_ms
from agents.factory import RunnerConfig, build_runner
from agents.models import register_models
from agents.simulator import install_simulator
from schemas import default_codec
from schemas.events import OPTIMIZATIONS
from streams import kafka
from streams.client import ResultWatcher, make_task, read_topic, submit_and_wait, submit_tasks
from streams.processors.ledger import tenant_partition
from streams.replay.range import Bound, read_range
from streams.settings import Settings
from streams.topics import OUTPUTS, RESULTS, TASK_LEDGER, TASKS, TASKS_BY_TENANT

pytestmark = pytest.mark.integration

codec = default_codec()
STEPS = {"fast": 1, "balanced": 3, "quality": 4}


async def _run(settings: Settings, tasks: list[dict], timeout: float = 120.0) -> dict[str, dict]:
    return await submit_and_wait(settings, codec, tasks, timeout)


async def _result_ids(settings: Settings) -> list[str]:
    """The task ids of every result on the broker now, sorted."""
    return sorted(r.record["task_id"] for r in await read_range(settings, codec, settings.topic(RESULTS),
                                                                Bound("earliest"), Bound("now")))


async def test_each_pattern_and_optimization_gets_its_steps_and_costs(isolated: Settings, worker_factory) -> None:
    worker_factory()
    combos = list(itertools.product(STEPS, OPTIMIZATIONS))
    tasks = [make_task(f"make the importer stream rows ({p}, {o})", pattern=p, optimization=o, tenant=f"t{n % 3}")
             for n, (p, o) in enumerate(combos)]
    results = await _run(isolated, tasks)
    assert set(results) == {t["task_id"] for t in tasks}
    outputs: dict[str, list[dict]] = {}
    async for r in read_topic(isolated, codec, isolated.topic(OUTPUTS), from_beginning=True, idle_timeout_s=2.0):
        outputs.setdefault(r.record["task_id"], []).append(r.record)
    for task in tasks:
        result, steps = results[task["task_id"]], outputs[task["task_id"]]
        assert result["status"] == "ok" and result["steps"] == STEPS[task["pattern"]] == len(steps)
        assert result["metadata"]["pattern"] == task["pattern"]
        assert result["cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in steps))
        assert all(s["status"] == "ok" and s["metadata"]["optimization"] == task["optimization"] for s in steps)
        if task["optimization"] == "cost":
            assert {s["model"] for s in steps} == {"simulator/fast-1"}
        if task["pattern"] == "quality":
            assert sum(s["metadata"].get("winner") == "true" for s in steps) == 1


async def test_a_tenant_budget_holds_across_workers_at_full_concurrency(isolated: Settings, worker_factory) -> None:
    """Two workers, 16 tasks at once each, one tenant's daily budget worth 25 of 120 tasks' costs: the
    ledger never lets the tenant spend past it, the spend is exactly what the results cost, and the
    tasks it could not afford end `budget_exceeded` (no model called for them)."""
    install_simulator()
    register_models()
    one = (await build_runner(RunnerConfig()).run(make_task("budget task 000", tenant="probe")))
    budget = 25 * one.result["cost_usd"]
    worker_factory(tenant_daily_budget_usd=budget), worker_factory(tenant_daily_budget_usd=budget)
    await wait_for_stable_group(isolated, 2)
    tasks = [make_task(f"budget task {n:03d}", tenant="acme") for n in range(120)]
    half = len(tasks) // 2  # half keyed by tenant, half by task id: both paths meet in one ledger
    producer = kafka.producer(isolated)
    await producer.start()
    try:
        for n, task in enumerate(tasks):
            key = task["task_id"].encode() if n < half else b"acme"
            await producer.send(isolated.topic(TASKS), codec.encode("TaskRequested", task), key=key)
        await producer.flush()
    finally:
        await producer.stop()
    async with ResultWatcher(isolated, codec) as watcher:
        results = await watcher.wait([t["task_id"] for t in tasks], 180)
    by_status = Counter(r["status"] for r in results.values())
    # Reservations take the estimate (prompt plus max output tokens) until settled, so at full concurrency
    # fewer than 25 fit; how many depends on timing, that some do and the rest are refused does not.
    assert set(by_status) == {"ok", "budget_exceeded"}, by_status
    spend = max(float(r["metadata"]["tenant_spend_usd"]) for r in results.values())
    assert spend <= budget + 1e-12
    assert spend == pytest.approx(sum(r["cost_usd"] for r in results.values()), rel=1e-9, abs=1e-12)
    assert all(r["cost_usd"] == 0 for r in results.values() if r["status"] == "budget_exceeded")


async def test_spellings_of_one_tenant_share_its_budget_and_non_names_are_dead_lettered(
        isolated: Settings, worker_factory) -> None:
    """`ACME`, ` acme ` and the full-width acme are all tenant `acme` (one daily budget, not four), and a
    name that is not one (`acme` + zero-width space, `acme|x`) is dead-lettered with the reason, never run."""
    install_simulator()
    register_models()
    one = (await build_runner(RunnerConfig()).run(make_task("spelling task 00", tenant="probe")))
    budget = 30 * one.result["cost_usd"]  # reservations hold an estimate: about 10 of 16 tasks fit, one at a time
    worker_factory(tenant_daily_budget_usd=budget, worker_concurrency=1)
    spellings = ["acme", "ACME", " acme ", "\uff41\uff43\uff4d\uff45"]
    tasks = [make_task(f"spelling task {n:02d}", tenant=spellings[n % 4]) for n in range(16)]
    bad = [make_task("not a tenant 1", tenant="acme\u200b"), make_task("not a tenant 2", tenant="acme|x")]
    async with ResultWatcher(isolated, codec) as watcher:
        await submit_tasks(isolated, codec, tasks + bad)
        results = await watcher.wait([t["task_id"] for t in tasks + bad], 120)
    assert {r["tenant"] for r in results.values()} == {"acme"} and len(results) == len(tasks)
    by_status = Counter(r["status"] for r in results.values())
    assert by_status["ok"] >= 1 and by_status["budget_exceeded"] >= 3, by_status  # four budgets would run all 16
    assert sum(r["cost_usd"] for r in results.values()) <= budget + 1e-12
    for task in bad:
        dead = watcher.dead[task["task_id"]]
        assert dead["stage"] == "tenant" and "not a valid name" in dead["error"], dead


async def test_tasks_keyed_by_tenant_run_at_once_and_the_rest_via_by_tenant_into_one_ledger(
        isolated: Settings, worker_factory) -> None:
    """Keyed by tenant (as `submit` does) a task runs in the first stage; keyed otherwise, or keyed by
    tenant but in another partition than the default partitioner's, it is forwarded. Two workers:
    both paths of one tenant still meet in one worker's ledger (co-partitioned topics)."""
    worker_factory(), worker_factory()
    await wait_for_stable_group(isolated, 2)  # a rebalance later could forward a record twice
    direct = [make_task(f"direct task {n}", tenant="acme") for n in range(6)]
    forwarded = [make_task(f"forwarded task {n}", tenant="acme") for n in range(6)]
    own = tenant_partition(b"acme", isolated.partitions)
    async with ResultWatcher(isolated, codec) as watcher:
        producer = kafka.producer(isolated)
        await producer.start()
        try:
            for n, task in enumerate(forwarded):  # half keyed by task id, half by tenant in a wrong partition
                key, partition = ((task["task_id"].encode(), None) if n % 2 else
                                  (b"acme", (own + 1) % isolated.partitions))
                await producer.send_and_wait(isolated.topic(TASKS), codec.encode("TaskRequested", task),
                                             key=key, partition=partition)
        finally:
            await producer.stop()
        await submit_tasks(isolated, codec, direct)
        results = await watcher.wait([t["task_id"] for t in direct + forwarded], 120)
    rekeyed = [r async for r in read_topic(isolated, codec, isolated.topic(TASKS_BY_TENANT), from_beginning=True,
                                           idle_timeout_s=2.0)]
    assert {r.record["task_id"] for r in rekeyed} == {t["task_id"] for t in forwarded}
    assert {r.key for r in rekeyed} == {b"acme"} and {r.partition for r in rekeyed} == {own}
    last = await _run(isolated, [make_task("the last task", tenant="acme")])
    spent = sum(r["cost_usd"] for r in [*results.values(), *last.values()])
    assert len(results) == 12 and all(r["status"] == "ok" for r in results.values())
    assert float(next(iter(last.values()))["metadata"]["tenant_spend_usd"]) == pytest.approx(spent)


async def test_a_task_sent_again_is_skipped_within_the_dedupe_window_and_run_after_it(
        isolated: Settings, worker_factory) -> None:
    window_s = 6.0
    worker_factory(task_dedupe_window_s=window_s, worker_concurrency=1)
    task = make_task("a task sent twice", tenant="acme")
    (first,) = (await _run(isolated, [task])).values()
    # Sent again, then a probe behind it in the tenant's partition: one task at a time, so once the probe is
    # answered the repeat was handled, and a result of it would be on the broker already.
    probe = make_task("a probe behind the repeat", tenant="acme")
    async with ResultWatcher(isolated, codec) as watcher:
        await submit_tasks(isolated, codec, [task, probe])
        answered = await watcher.wait([probe["task_id"]], 120)
    assert answered[probe["task_id"]]["created_at"] - first["created_at"] <= window_s * 1000  # within the window
    assert await _result_ids(isolated) == sorted([task["task_id"], probe["task_id"]])  # not run nor charged again
    while now_ms() <= first["created_at"] + window_s * 1000:  # the window (counted from the result) passes
        await asyncio.sleep(0.1)
    assert set(await _run(isolated, [task])) == {task["task_id"]}
    assert await _result_ids(isolated) == sorted([task["task_id"]] * 2 + [probe["task_id"]])
    admin = kafka.admin(isolated)
    await admin.start()
    try:  # bounded on the broker too: the task ledger deletes what the window no longer needs
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC,
                                                                 isolated.topic(TASK_LEDGER))])
    finally:
        await admin.close()
    configs = {name: value for name, value, *_ in described[0].resources[0][4]}
    assert configs["cleanup.policy"] == "compact,delete"  # created by the fixture, with its (default) window
    assert configs["retention.ms"] == str(int(2 * isolated.task_dedupe_window_s * 1000))
