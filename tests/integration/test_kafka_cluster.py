"""A three-node KRaft cluster of the embedded stack: replication 3, min.insync.replicas 2, and a
partition leader's node killed while a producer (acks=all, idempotent) and a consumer go on."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas import default_codec
from streams import kafka
from streams.admin import ensure_topics
from streams.client import make_task, submit_and_wait
from streams.devstack import LocalStack, PartStatus, free_port_range, free_ports
from streams.devstack.process import read_pid
from streams.harness import start_worker, stop
from streams.settings import Settings
from streams.topics import TopicSpec

# A cluster of its own (three JVMs) and a late stack of its own: minutes on two cores. `make test-slow`;
# `make chaos` meets the same failover and start-up under load every run.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Only Kafka is started: the other parts point elsewhere (never contacted).
ELSEWHERE = {"DATABASE_URL": "postgresql://app:pw@db.example:5432/app", "REDIS_URL": "redis://cache.example:6379/0"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalStack]:
    root = Path(tempfile.mkdtemp(prefix="agentstream-cluster-test-"))
    first = free_port_range(6)  # node i: first + 2i (client) and first + 1 + 2i (controller)
    settings = Settings(AGENTSTREAM_DATA_DIR=root, AGENTSTREAM_KAFKA_PORT=first,
                        AGENTSTREAM_KAFKA_CONTROLLER_PORT=first + 1, AGENTSTREAM_KAFKA_BROKERS=3, **ELSEWHERE)
    stack = LocalStack(settings)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


def test_three_nodes_are_reported_and_settings_follow_them(cluster: LocalStack) -> None:
    s = cluster.settings
    first = s.kafka_port
    assert [p.status() for p in cluster.kafka] == [
        PartStatus(f"kafka-{n}", f"127.0.0.1:{first + 2 * (n - 1)}", "running") for n in (1, 2, 3)]
    assert s.kafka_servers == f"127.0.0.1:{first},127.0.0.1:{first + 2},127.0.0.1:{first + 4}"
    assert s.replication_factor == 3
    # A stack built from single-node settings on the same folder still sees (and would stop) every node.
    plain = LocalStack(s.model_copy(update={"kafka_brokers": 1}))
    assert [p.name for p in plain.parts][:3] == ["kafka-1", "kafka-2", "kafka-3"]
    assert all(p.status().state == "running" for p in plain.kafka)


async def _leader(settings: Settings, topic: str) -> tuple[int, list[int]]:
    admin = kafka.admin(settings)
    await admin.start()
    try:
        (described,) = await kafka.retrying(lambda: admin.describe_topics([topic]))
        (partition,) = described["partitions"]
        return partition["leader"], partition["isr"]
    finally:
        await admin.close()


async def test_a_leader_killed_loses_no_acknowledged_record(cluster: LocalStack) -> None:
    settings = cluster.settings
    topic = f"failover-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [TopicSpec(topic, 1)])  # replication 3 (the cluster's setting), led
    leader, isr = await _leader(settings, topic)
    assert sorted(isr) == [1, 2, 3]
    producer = kafka.producer(settings, request_timeout_ms=10_000, retry_backoff_ms=200)
    await producer.start()
    sent: list[bytes] = []
    try:
        for i in range(200):
            await producer.send(topic, f"before-{i}".encode())
            sent.append(f"before-{i}".encode())
        await producer.flush()
        victim = cluster.kafka_node(leader)
        pid = read_pid(victim.pid_file)
        victim.down(signal.SIGKILL)
        assert pid is not None and read_pid(victim.pid_file) is None
        for i in range(200):  # acks=all with 2 of 3 in sync: still accepted, by the new leader
            await producer.send(topic, f"after-{i}".encode())
            sent.append(f"after-{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    new_leader, isr = await _leader(settings, topic)
    assert new_leader != leader and leader not in isr and len(isr) == 2

    consumer = kafka.consumer(settings, topic, group_id=topic, auto_offset_reset="earliest")
    await consumer.start()
    got: list[bytes] = []
    try:
        for _ in range(100):
            batch = await consumer.getmany(timeout_ms=500)
            got += [m.value for messages in batch.values() for m in messages]
            if len(got) >= len(sent):
                break
    finally:
        await consumer.stop()
    assert got == sent  # every acknowledged record, once, in order

    cluster.kafka_node(leader).up()  # back: it catches up and rejoins the in-sync replicas
    for _ in range(60):
        _, isr = await _leader(settings, topic)
        if sorted(isr) == [1, 2, 3]:
            break
        await asyncio.sleep(0.5)
    assert sorted(isr) == [1, 2, 3]


async def test_a_worker_started_before_kafka_and_postgresql_waits_for_them_then_answers() -> None:
    """A rolling deploy can start workers while the cluster or the database restarts: the worker waits
    for both (AGENTSTREAM_STARTUP_TIMEOUT_S), it does not exit."""
    kafka_port, controller, postgres = free_ports(3)
    root = Path(tempfile.mkdtemp(prefix="agentstream-late-stack-"))
    root.chmod(0o755)  # the embedded PostgreSQL runs as an unprivileged user and must traverse it
    settings = Settings(AGENTSTREAM_DATA_DIR=root, AGENTSTREAM_KAFKA_PORT=kafka_port,
                        AGENTSTREAM_KAFKA_CONTROLLER_PORT=controller, AGENTSTREAM_POSTGRES_PORT=postgres,
                        AGENTSTREAM_MEMORY_CONTEXT_K=0, AGENTSTREAM_STARTUP_TIMEOUT_S=120,
                        REDIS_URL="redis://cache.example:6379/0")  # memory recall is off: never contacted
    worker = start_worker(settings, "early-worker.log")
    stack = LocalStack(settings)
    try:
        await asyncio.sleep(4)
        assert worker.poll() is None, (root / "early-worker.log").read_text()[-2000:]  # waiting, not exited
        await asyncio.to_thread(stack.up)
        await ensure_topics(settings, timeout_s=60)  # the worker creates them too: whoever comes first
        task = make_task("answered by a worker that started first")
        results = await submit_and_wait(settings, default_codec(), [task], 120.0)
        assert results[task["task_id"]]["status"] == "ok"
        log = (root / "early-worker.log").read_text()
        assert "waiting for PostgreSQL" in log or "Kafka not ready" in log
    finally:
        stop(worker)
        stack.down()
        shutil.rmtree(root, ignore_errors=True)
