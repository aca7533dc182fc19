"""The embedded local stack against real servers: start, answer, idempotent up, stop, and the errors.

One stack (fresh data folder, free ports, never the defaults) is shared by the module; the tests
that need their own stack make every other part external so nothing slow is started.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.devstack import LocalStack, PartStatus, StackError, free_port, free_ports
from streams.devstack.process import port_open, read_pid
from streams.settings import Settings

pytestmark = pytest.mark.integration

EXTERNAL = {
    "KAFKA_BOOTSTRAP_SERVERS": "broker.example:9092",
    "DATABASE_URL": "postgresql://app:hunter2@db.example:5432/app",
    "REDIS_URL": "redis://:hunter2@cache.example:6379/0",
    "S3_ENDPOINT_URL": "http://s3.example:9000",
}


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings on a private folder and private ports; URLs unset unless given (env ignored)."""
    kafka, controller, postgres, redis, s3 = free_ports(5)
    values: dict[str, Any] = {
        "AGENTSTREAM_DATA_DIR": data_dir,
        "AGENTSTREAM_KAFKA_PORT": kafka,
        "AGENTSTREAM_KAFKA_CONTROLLER_PORT": controller,
        "AGENTSTREAM_POSTGRES_PORT": postgres,
        "AGENTSTREAM_REDIS_PORT": redis,
        "AGENTSTREAM_S3_PORT": s3,
        **dict.fromkeys(EXTERNAL),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def data_root() -> Iterator[Path]:
    # Not pytest's tmp_path: pytest resets /tmp/pytest-of-<user> to mode 0700, and the embedded
    # PostgreSQL runs as another user (when we are root) that must traverse the folder.
    root = Path(tempfile.mkdtemp(prefix="agentstream-stack-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def settings(data_root: Path) -> Settings:
    return make_settings(data_root / "main")


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[LocalStack]:
    local = LocalStack(settings, with_s3=True)
    try:
        local.up()
        yield local
    finally:
        local.down()


def pids(stack: LocalStack) -> dict[str, int | None]:
    return {part.name: read_pid(part.pid_file) for part in stack.parts}


def test_up_reports_each_part_running(stack: LocalStack, settings: Settings) -> None:
    assert stack.status() == [
        PartStatus("kafka", f"127.0.0.1:{settings.kafka_port}", "running"),
        PartStatus("postgres", f"127.0.0.1:{settings.postgres_port}", "running"),
        PartStatus("redis", f"127.0.0.1:{settings.redis_port}", "running"),
        PartStatus("s3", f"http://127.0.0.1:{settings.s3_port}", "running"),
    ]
    for part in stack.parts:
        assert (settings.data_dir / part.name / f"{part.name}.pid").exists()
        assert (settings.data_dir / part.name / f"{part.name}.log").exists()


async def test_kafka_round_trip(stack: LocalStack, settings: Settings) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_servers, auto_offset_reset="earliest", group_id=topic
    )
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"k1", b"hello")


def test_postgres_answers_with_pgvector(stack: LocalStack, settings: Settings) -> None:
    import psycopg

    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        conn.execute("create extension if not exists vector")
        row = conn.execute("select '[1,2,3]'::vector <-> '[1,2,4]'::vector, version()").fetchone()
    assert row is not None
    assert row[0] == pytest.approx(1.0)
    assert "PostgreSQL 16" in row[1]


def test_redis_set_get(stack: LocalStack, settings: Settings) -> None:
    import redis

    client = redis.Redis.from_url(settings.redis_dsn)
    try:
        client.set("stack-test", b"value", ex=60)
        assert client.get("stack-test") == b"value"
    finally:
        client.close()


def test_s3_put_get(stack: LocalStack, settings: Settings) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{settings.s3_port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket="stack-test")
    s3.put_object(Bucket="stack-test", Key="a/b.avro", Body=b"bytes")
    assert s3.get_object(Bucket="stack-test", Key="a/b.avro")["Body"].read() == b"bytes"


def test_second_up_is_a_no_op(stack: LocalStack, settings: Settings) -> None:
    before = pids(stack)
    again = LocalStack(settings, with_s3=True)  # a new object, as a second `agentstream up` would be
    assert [s.state for s in again.up()] == ["running"] * 4
    assert pids(again) == before
    assert all(before.values())


def test_down_stops_every_part(stack: LocalStack, settings: Settings) -> None:
    # Runs last among the tests that use the shared stack (file order).
    assert all(s.state == "stopped" for s in stack.down())
    assert all(s.state == "stopped" for s in stack.status())
    ports = [settings.kafka_port, settings.kafka_controller_port, settings.postgres_port]
    for port in [*ports, settings.redis_port, settings.s3_port]:
        assert not port_open(port), port
    assert not any(part.pid_file.exists() for part in stack.parts)
    assert [s.state for s in stack.down()] == ["stopped"] * 4  # a second down is harmless


def test_external_parts_are_not_started(data_root: Path) -> None:
    settings = make_settings(data_root / "external", **EXTERNAL)
    stack = LocalStack(settings, with_s3=True)
    statuses = stack.up()
    assert statuses == [
        PartStatus("kafka", "broker.example:9092", "external"),
        PartStatus("postgres", "postgresql://app:***@db.example:5432/app", "external"),
        PartStatus("redis", "redis://:***@cache.example:6379/0", "external"),
        PartStatus("s3", "http://s3.example:9000", "external"),
    ]
    assert stack.down() == statuses
    assert not settings.data_dir.exists()  # nothing was started, nothing was written


def only_redis(data_dir: Path, **overrides: Any) -> Settings:
    """A stack where only the fast part (redis) is embedded."""
    external = {key: value for key, value in EXTERNAL.items() if key != "REDIS_URL"}
    return make_settings(data_dir, **{**external, **overrides})


def test_stale_pid_file_is_cleaned(data_root: Path) -> None:
    settings = only_redis(data_root / "stale")
    stack = LocalStack(settings)
    redis_part = stack.parts[2]
    dead = subprocess.Popen(["true"])
    dead.wait()
    redis_part.pid_file.parent.mkdir(parents=True)
    redis_part.pid_file.write_text(f"{dead.pid}\n")
    assert stack.status()[2].state == "stale pid cleaned"
    assert not redis_part.pid_file.exists()
    assert stack.status()[2].state == "stopped"
    redis_part.pid_file.write_text(f"{dead.pid}\n")
    try:
        assert stack.up()[2].state == "running"  # up cleans it too, then starts
        assert read_pid(redis_part.pid_file) not in (None, dead.pid)
    finally:
        assert stack.down()[2].state == "stopped"


def test_port_in_use_names_the_port_and_setting(data_root: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        stack = LocalStack(only_redis(data_root / "busy", AGENTSTREAM_REDIS_PORT=port))
        with pytest.raises(StackError) as caught:
            stack.up()
    message = str(caught.value)
    assert str(port) in message
    assert "AGENTSTREAM_REDIS_PORT" in message
    assert stack.status()[2].state == "stopped"


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert len(set(free_ports(8))) == 8
