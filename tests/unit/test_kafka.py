"""The Kafka client factory: one way to connect, and a broker that is down said in one line."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import warnings

import pytest

from streams import kafka
from streams.devstack import free_port
from streams.settings import Settings


def _settings(**env: object) -> Settings:
    return Settings(KAFKA_BOOTSTRAP_SERVERS="broker-a:9092,broker-b:9092", AGENTSTREAM_APP_ID="shop", **env)


async def test_every_client_connects_to_the_settings_broker_named_by_app_and_role() -> None:
    settings = _settings()
    producer, consumer, admin = kafka.producer(settings), kafka.consumer(settings, "t"), kafka.admin(settings)
    try:  # aiokafka keeps the connection options on its inner client
        seen = {(c._bootstrap_servers, c._client_id) for c in (producer.client, consumer._client, admin._client)}
        assert seen == {("broker-a:9092,broker-b:9092", f"shop-{role}") for role in ("producer", "consumer", "admin")}
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.close()


async def test_producer_waits_for_all_replicas_and_is_idempotent_unless_told_otherwise() -> None:
    safe, raw = kafka.producer(_settings()), kafka.producer(_settings(), acks=1, enable_idempotence=False)
    try:
        assert (safe._sender._acks, safe._txn_manager is not None) == (-1, True)
        assert (raw._sender._acks, raw._txn_manager is not None) == (1, False)
    finally:
        await safe.stop()
        await raw.stop()


async def test_a_client_that_cannot_reach_the_broker_is_closed_and_says_what_to_do() -> None:
    settings = Settings(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for make in (lambda: kafka.consumer(settings), lambda: kafka.producer(settings), lambda: kafka.admin(settings)):
            client = make()
            with pytest.raises(kafka.KafkaUnavailable, match=r"not reachable at 127\.0\.0\.1:\d+: .*agentstream up"):
                await client.start()
            del client
            gc.collect()
    assert not [w for w in caught if "Unclosed" in str(w.message)]


@pytest.mark.parametrize("command", [["submit", "x"], ["submit", "x", "--wait"], ["tail", "agent.results",
                                                                                 "--count", "1"], ["worker"]])
def test_commands_say_in_one_line_that_kafka_is_down(command: list[str], tmp_path) -> None:
    """At the terminal at once; a worker first waits its start-up timeout (a deploy may come before the
    cluster), saying so, then ends with the same line."""
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "AGENTSTREAM_DATA_DIR": str(tmp_path),
           "AGENTSTREAM_STARTUP_TIMEOUT_S": "3"}
    proc = subprocess.run([sys.executable, "-m", "streams", *command], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 1
    assert lines[-1] == (f"Error: Kafka is not reachable at 127.0.0.1:{port}: start the local stack with "
                         "`agentstream up`, or set KAFKA_BOOTSTRAP_SERVERS to your broker")
    waits = lines[:-1]
    assert all("Kafka not ready; starting again" in line for line in waits)
    assert bool(waits) == (command == ["worker"])


async def test_retriable_cluster_errors_are_retried_until_they_pass_and_others_raise_at_once() -> None:
    from aiokafka.errors import NodeNotReadyError, TopicAuthorizationFailedError

    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise NodeNotReadyError("node 1 is down")  # what an admin request to a dead node raises
        return "answered"

    assert await kafka.retrying(flaky, timeout_s=10) == "answered" and len(calls) == 3

    async def refused() -> None:
        calls.append(1)
        raise TopicAuthorizationFailedError("no")

    calls.clear()
    with pytest.raises(TopicAuthorizationFailedError):
        await kafka.retrying(refused, timeout_s=10)
    assert len(calls) == 1

    async def always_down() -> None:
        raise NodeNotReadyError("still down")

    with pytest.raises(NodeNotReadyError):
        await kafka.retrying(always_down, timeout_s=0.5)


async def test_every_producer_takes_the_same_largest_record() -> None:
    """One figure for every producer (task stage, processors, sinks, clients, the bench's raw one), so a record
    one of them took can be forwarded or dead-lettered by another."""
    for settings in (_settings(), _settings(AGENTSTREAM_MAX_RECORD_BYTES=2_000_000)):
        producers = [kafka.producer(settings), kafka.producer(settings, acks=1, enable_idempotence=False)]
        try:
            assert {p._max_request_size for p in producers} == {settings.max_record_bytes}
        finally:
            for p in producers:
                await p.stop()
    assert _settings().max_record_bytes == 1_048_576
