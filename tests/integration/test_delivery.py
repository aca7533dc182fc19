"""Every task answered once across rebalances, graceful stops and crashes (issue 11), on the real stack.

The workers are real `agentstream worker` processes; the model is the simulator, slowed down with
AGENTSTREAM_SIMULATOR_LATENCY_MS so that tasks are in flight when the group changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter

import pytest
from aiokafka import TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from group_helpers import wait_for_stable_group

from schemas import default_codec
from schemas.events import task_identity, tenant_key_of
from streams import kafka
from streams.client import ResultWatcher, make_task, read_topic
from streams.lifecycle import CRASH_EXIT_CODE
from streams.processors.ledger import tenant_partition
from streams.settings import Settings
from streams.topics import DEADLETTERS, OUTPUTS, RESULTS, SPEND_LEDGER, TASKS, TASKS_BY_TENANT

pytestmark = pytest.mark.integration

codec = default_codec()


async def _produce(settings: Settings, tasks: list[dict], key_by_tenant: bool = True) -> dict[tuple[int, int], str]:
    """Produce tasks to agent.tasks; {(partition, offset): task id}."""
    producer = kafka.producer(settings)
    await producer.start()
    try:
        sent = []
        for task in tasks:
            key = tenant_key_of(task) if key_by_tenant else task["task_id"].encode()
            sent.append((task["task_id"], await producer.send(settings.topic(TASKS),
                                                             codec.encode("TaskRequested", task), key=key)))
        offsets = {}
        for task_id, delivery in sent:
            meta = await delivery
            offsets[(meta.partition, meta.offset)] = task_id
        return offsets
    finally:
        await producer.stop()


async def _answers(settings: Settings) -> Counter[str]:
    """How many results each task id has on agent.results."""
    return Counter([r.record["task_id"] async for r in read_topic(
        settings, codec, settings.topic(RESULTS), from_beginning=True, idle_timeout_s=1.5) if r.record])


class _CommitWatch:
    """Samples the task group's committed offsets on agent.tasks and checks, each time, that every
    task below a committed offset already has its result on the broker (nothing committed past an
    unfinished task)."""

    def __init__(self, settings: Settings, offsets: dict[tuple[int, int], str]) -> None:
        self.settings, self.offsets = settings, offsets
        self.group = f"{settings.app_id}-tasks"
        self.samples = 0
        self.violations: list[str] = []
        self.highest: dict[int, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        admin = kafka.admin(self.settings)
        results = kafka.consumer(self.settings)
        await admin.start()
        await results.start()
        answered: set[str] = set()
        try:
            tps = [TopicPartition(self.settings.topic(RESULTS), p) for p in range(self.settings.partitions)]
            results.assign(tps)
            await results.seek_to_beginning(*tps)
            while not stop.is_set():
                try:
                    committed = await admin.list_consumer_group_offsets(self.group)
                except KafkaError:  # the group has no coordinator yet
                    await asyncio.sleep(0.3)
                    continue
                ends = await results.end_offsets(tps)  # read after the sample: holds every result committed before it
                while [tp for tp, end in ends.items() if await results.position(tp) < end]:
                    for messages in (await results.getmany(timeout_ms=200)).values():
                        answered.update(codec.decode_as("TaskResult", m.value)["task_id"] for m in messages)
                for tp, meta in committed.items():
                    if tp.topic != self.settings.topic(TASKS) or meta.offset < 0:
                        continue
                    self.highest[tp.partition] = max(self.highest.get(tp.partition, 0), meta.offset)
                    for (p, offset), task_id in self.offsets.items():
                        if p == tp.partition and offset < meta.offset and task_id not in answered:
                            self.violations.append(f"{tp.partition}:{offset} {task_id} committed unanswered")
                self.samples += 1
                await asyncio.sleep(0.3)
        finally:
            await results.stop()
            await admin.close()


async def test_a_rebalance_and_a_sigterm_with_tasks_in_flight_lose_nothing_and_run_nothing_twice(
        isolated: Settings, worker_factory) -> None:
    """Tasks keep arriving (3/s, 2.5 s each) while a second worker joins (a rebalance: the first drains
    what it runs) and then the first is stopped with SIGTERM (it drains again, commits, leaves)."""
    slow = {"simulator_latency_ms": 2500.0, "worker_concurrency": 8}
    first = worker_factory(**slow)
    offsets: dict[tuple[int, int], str] = {}
    watch, stop = _CommitWatch(isolated, offsets), asyncio.Event()

    async def keep_sending() -> None:
        n = 0
        while not stop.is_set():
            batch = [make_task(f"task {n + k} of the rebalance test", tenant=f"team-{(n + k) % 8}") for k in range(3)]
            offsets.update(await _produce(isolated, batch))
            n += 3
            await asyncio.sleep(1.0)

    watcher = ResultWatcher(isolated, codec)
    await watcher.start()
    sending, sampling = asyncio.create_task(keep_sending()), asyncio.create_task(watch.run(stop))
    try:
        while len(watcher.results) < 6:  # the first worker is under way ...
            await asyncio.sleep(0.2)
            await watcher.wait(list(offsets.values()), 0.3)
        worker_factory(**slow)  # ... a second joins: a rebalance while the first has tasks in flight
        await wait_for_stable_group(isolated, 2, timeout_s=90, settle_s=3)
        first.send_signal(signal.SIGTERM)  # then the first stops gracefully, again with tasks in flight
        assert await asyncio.to_thread(first.wait, 30) == 0
        await wait_for_stable_group(isolated, 1, timeout_s=60, settle_s=0)
    finally:
        stop.set()
        await sending
        await sampling
    try:
        results = await watcher.wait(offsets.values(), 120)
    finally:
        await watcher.stop()
    assert set(results) == set(offsets.values())  # none lost
    answers = await _answers(isolated)
    assert {tid: n for tid, n in answers.items() if n > 1} == {}  # none run twice
    assert watch.samples > 5 and watch.violations == []  # never committed past an unfinished task
    assert sum(watch.highest.values()) > 0
    log = (isolated.data_dir / f"worker-{isolated.app_id}.log").read_text().splitlines()
    revoked = [json.loads(line) for line in log if '"partitions revoked"' in line]
    assert max(r["in_flight"] for r in revoked) > 0  # the drains had tasks to finish
    assert any('"task stage stopped"' in line for line in log)
    print(f"{len(offsets)} tasks sent, {len(results)} answered, {sum(answers.values())} results, "
          f"{watch.samples} commit samples, revocations: {[(r['in_flight'], r['abandoned']) for r in revoked]}")


async def test_a_fresh_worker_answers_every_task_once_and_skips_a_second_copy(
        isolated: Settings, worker_factory) -> None:
    """Started just before the tasks arrive (Faust used to rebalance here and skip records); keyed by
    task id, so every task takes the by-tenant hop; two poison records; one task sent twice at once."""
    worker_factory(simulator_latency_ms=300.0)
    tasks = [make_task(f"fresh worker task {n}", tenant=f"team-{n % 5}") for n in range(30)]
    twice = make_task("a task sent twice back to back", tenant="acme")
    watcher = ResultWatcher(isolated, codec)
    await watcher.start()
    producer = kafka.producer(isolated)
    await producer.start()
    try:
        for value in (b"\x00\xffnot avro", b"{\"not\": \"avro\"}"):
            await producer.send_and_wait(isolated.topic(TASKS), value, key=b"poison")
        for _ in range(2):
            await producer.send_and_wait(isolated.topic(TASKS), codec.encode("TaskRequested", twice), key=b"acme")
    finally:
        await producer.stop()
    await _produce(isolated, tasks, key_by_tenant=False)
    try:
        results = await watcher.wait([t["task_id"] for t in [*tasks, twice]], 120)
    finally:
        await watcher.stop()
    assert len(results) == 31
    answers = await _answers(isolated)
    assert set(answers.values()) == {1}
    dead = [r.record for r in await _list(isolated, DEADLETTERS)]
    assert sorted(d["payload"] for d in dead) == sorted([b"\x00\xffnot avro", b"{\"not\": \"avro\"}"])
    rekeyed = await _list(isolated, TASKS_BY_TENANT)
    assert {r.partition for r in rekeyed if r.record["tenant"] == "team-1"} == {
        tenant_partition(b"team-1", isolated.partitions)}


async def _list(settings: Settings, topic: str) -> list:
    return [r async for r in read_topic(settings, codec, settings.topic(topic), from_beginning=True,
                                        idle_timeout_s=1.5)]


async def _wait_for_ledger_key(settings: Settings, wanted: list, timeout_s: float = 60.0) -> None:
    consumer = kafka.consumer(settings)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic(SPEND_LEDGER), p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                if any(m.key and json.loads(m.key) == wanted and m.value for m in messages):
                    return
        raise AssertionError(f"no ledger record {wanted}")
    finally:
        await consumer.stop()


async def test_after_a_crash_a_finished_task_is_not_run_again_and_a_cut_task_reuses_its_answered_calls(
        isolated: Settings, worker_factory) -> None:
    """SIGKILL with nothing committed (commit interval 60 s): the finished task comes back and is skipped
    (its done mark is in the ledger); the balanced task killed after two of its three calls runs again as
    attempt 2, reusing the two answers, and the tenant pays each call once."""
    first = worker_factory(simulator_latency_ms=1200.0, task_commit_interval_s=60.0)
    quick = make_task("answered before the crash", tenant="acme")
    cut = make_task("cut short after two of its three steps", tenant="acme", pattern="balanced")
    watcher = ResultWatcher(isolated, codec)
    await watcher.start()
    try:
        await _produce(isolated, [quick, cut])
        await watcher.wait([quick["task_id"]], 60)
        await _wait_for_ledger_key(isolated, ["step", task_identity(cut), 2, ""])
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        worker_factory(simulator_latency_ms=1200.0)
        results = await watcher.wait([cut["task_id"]], 90)
    finally:
        await watcher.stop()
    result = results[cut["task_id"]]
    assert result["status"] == "ok" and result["metadata"]["attempt"] == "2"
    outputs = [r.record for r in await _list(isolated, OUTPUTS) if r.record["task_id"] == cut["task_id"]]
    assert sorted((o["step"], o["metadata"].get("reused")) for o in outputs) == [(1, "true"), (2, "true"), (3, None)]
    answers = await _answers(isolated)
    assert answers == Counter({quick["task_id"]: 1, cut["task_id"]: 1})  # the finished one was not run again
    spent = float(result["metadata"]["tenant_spend_usd"])
    assert spent == pytest.approx(watcher.results[quick["task_id"]]["cost_usd"] + result["cost_usd"])


def test_the_range_assignor_puts_partition_p_of_both_task_topics_on_one_worker() -> None:
    """The tenant's ledger stays local only if agent.tasks p and agent.tasks.by-tenant p go to one member."""
    from aiokafka.cluster import ClusterMetadata
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

    topics = ["agent.tasks", "agent.tasks.by-tenant"]
    for partitions, members in ((4, 3), (12, 5), (3, 4)):
        cluster = ClusterMetadata()
        cluster.partitions_for_topic = lambda _topic, n=partitions: set(range(n))  # type: ignore[method-assign]
        subscriptions = {f"worker-{m}": ConsumerProtocolMemberMetadata(0, topics, b"") for m in range(members)}
        assignment = RangePartitionAssignor.assign(cluster, subscriptions)
        for member in assignment.values():
            owned = {topic: set(parts) for topic, parts in member.assignment}
            assert owned.get(topics[0], set()) == owned.get(topics[1], set())
        assert sum(len(dict(m.assignment).get(topics[0], [])) for m in assignment.values()) == partitions


@pytest.mark.parametrize("point", ["task-after-results", "task-after-answer"])
async def test_a_worker_killed_at_the_dangerous_moment_answers_every_task_once_in_effect_and_charges_once(
        isolated: Settings, worker_factory, point: str) -> None:
    """The worker dies (no clean-up, nothing flushed) at a fault point: right after a task's result is on
    the broker and before its done mark (the window for a second result), or right after a call's answer
    is queued (the window where a charge could outlive its answer). After a restart every task has an
    `ok` last result, and the tenant's spend is the sum of the last results' costs: no call charged twice."""
    doomed = worker_factory(fault_point=point, simulator_latency_ms=100.0)
    tasks = [make_task(f"a balanced task {n} ({point})", tenant="acme", pattern="balanced") for n in range(3)]
    watcher = ResultWatcher(isolated, codec)
    await watcher.start()
    try:
        await _produce(isolated, tasks)
        assert await asyncio.to_thread(doomed.wait, 120) == CRASH_EXIT_CODE  # it died at the point, not before
        worker_factory()
        await watcher.wait([t["task_id"] for t in tasks], 120)
        probe = make_task("the probe after the crash", tenant="acme")
        await _produce(isolated, [probe])
        await watcher.wait([probe["task_id"]], 60)
    finally:
        await watcher.stop()
    last: dict[str, dict] = {}
    for r in [r async for r in read_topic(isolated, codec, isolated.topic(RESULTS), from_beginning=True,
                                          idle_timeout_s=1.5)]:
        last[r.record["task_id"]] = r.record
    assert set(last) == {t["task_id"] for t in [*tasks, probe]}
    assert all(r["status"] == "ok" for r in last.values())
    spent = float(last[probe["task_id"]]["metadata"]["tenant_spend_usd"])
    assert spent == pytest.approx(sum(r["cost_usd"] for r in last.values()), rel=1e-9, abs=1e-12)
