"""The pipeline on a secured Kafka, as a user runs it: `agentstream up --secure --tenant ...`, a worker with
`secure/worker.env`, `agentstream submit` with `secure/tenant-NAME.env` (issue 12).

A Kafka of its own (SASL_SSL only, ACLs on) in a data folder of its own; PostgreSQL and Redis are the
session stack's.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from pydantic import SecretStr

from schemas import Codec
from streams import kafka
from streams.client import make_task, read_topic
from streams.devstack import free_ports
from streams.harness import start_worker, stop
from streams.kafka import KafkaSecurityError, KafkaUnavailable
from streams.settings import Settings
from streams.topics import DEADLETTERS, tenant_result_topic, tenant_task_topic

pytestmark = pytest.mark.integration


def _env_file(path: Path) -> dict[str, str]:
    """The variables of an env file `up --secure` wrote (`K='v'` lines), as a shell would read them."""
    return dict(shlex.split(line)[0].split("=", 1) for line in path.read_text().splitlines() if line.strip())


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", *args], env={**os.environ, **env}, text=True,
                          capture_output=True, timeout=timeout)


class Secured:
    def __init__(self, base: Settings, data_dir: Path) -> None:
        self.base, self.secure_dir = base, data_dir / "secure"

    def settings(self, principal: str, **overrides: object) -> Settings:
        return Settings(**{**self.base.as_env(), **_env_file(self.secure_dir / f"{principal}.env"), **overrides})

    def env(self, principal: str) -> dict[str, str]:
        return {**self.base.as_env(), **_env_file(self.secure_dir / f"{principal}.env")}


@pytest.fixture(scope="module")
def secured(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """`agentstream up --secure --tenant acme --tenant beta` on a data folder and ports of its own, and a
    worker started with the worker principal's env file."""
    data_dir = tmp_path_factory.mktemp("secure")
    kafka_port, controller = free_ports(2)
    base = stack_settings.model_copy(update={
        "data_dir": data_dir, "kafka_port": kafka_port, "kafka_controller_port": controller,
        "database_url": SecretStr(stack_settings.postgres_dsn), "redis_url": SecretStr(stack_settings.redis_dsn)})
    up = _cli(base.as_env(), "up", "--secure", "--tenant", "acme", "--tenant", "ACME", "--tenant", "beta")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "SASL_SSL only" in up.stdout and up.stdout.count("tenant-") == 2, up.stdout  # ACME is acme
    secured = Secured(base, data_dir)
    for name in ("worker", "tenant-acme", "tenant-beta"):
        assert (data_dir / "secure" / f"{name}.env").stat().st_mode & 0o077 == 0  # secrets: owner only
    worker = start_worker(secured.settings("worker"))
    try:
        yield secured
    finally:
        stop(worker)
        _cli(base.as_env(), "down")


def test_a_tenants_task_is_answered_over_sasl_ssl(secured: Secured) -> None:
    done = _cli(secured.env("tenant-acme"), "submit", "summarise the secured pipeline", "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  ok  " in done.stdout, done.stdout


def test_a_record_claiming_another_tenant_is_charged_to_its_topics_tenant(secured: Secured) -> None:
    acme = secured.settings("tenant-acme")
    codec = Codec()
    forged = make_task("charge this to beta", tenant="beta")

    async def scenario() -> dict[str, object]:
        producer = kafka.producer(acme)
        await producer.start()
        try:  # written as acme would with a raw client, not through `submit` (which sets the tenant)
            await producer.send_and_wait(tenant_task_topic(acme, "acme"), codec.encode("TaskRequested", forged))
        finally:
            await producer.stop()
        async for got in read_topic(acme, codec, tenant_result_topic(acme, "acme"), from_beginning=True,
                                    idle_timeout_s=60):
            if got.record["task_id"] == forged["task_id"]:
                return got.record
        raise AssertionError("no result on acme's result topic")

    result = asyncio.run(scenario())
    assert result["tenant"] == "acme" and result["status"] == "ok"


def test_a_tenant_cannot_write_another_tenants_topic_nor_read_shared_ones(secured: Secured) -> None:
    acme = secured.settings("tenant-acme")
    codec = Codec()

    async def write_to_beta() -> None:
        producer = kafka.producer(acme, request_timeout_ms=10000)
        await producer.start()
        try:
            await producer.send_and_wait(tenant_task_topic(acme, "beta"),
                                         codec.encode("TaskRequested", make_task("sneaky")))
        finally:
            await producer.stop()

    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(write_to_beta())
    refused = _cli(secured.env("tenant-acme") | {"AGENTSTREAM_TENANT": "beta"}, "submit", "x")
    assert refused.returncode != 0 and "refused this principal" in refused.stderr, refused.stderr

    async def read_dead_letters() -> None:  # they keep original bytes: the workers' principal only
        async for _ in read_topic(acme, codec, acme.topic(DEADLETTERS), from_beginning=True, idle_timeout_s=5):
            pass

    with pytest.raises((KafkaError, ValueError)):
        asyncio.run(read_dead_letters())


def test_a_plaintext_client_a_wrong_password_and_an_untrusted_ca_are_each_told_apart(secured: Secured) -> None:
    async def connect(settings: Settings) -> None:
        admin = kafka.admin(settings)
        await admin.start()
        await admin.close()

    plain = secured.base
    with pytest.raises(KafkaUnavailable, match="KAFKA_SECURITY_PROTOCOL"):
        asyncio.run(connect(plain))
    with pytest.raises(KafkaSecurityError, match=r"refused the login .*'tenant-acme'.*wrong user name or password"):
        asyncio.run(connect(secured.settings("tenant-acme", KAFKA_SASL_PASSWORD="not-it")))
    with pytest.raises(KafkaSecurityError, match=r"not trusted .*KAFKA_SSL_CAFILE"):
        asyncio.run(connect(secured.settings("tenant-acme", KAFKA_SSL_CAFILE=None)))
    wrong = _cli(secured.env("tenant-acme") | {"KAFKA_SASL_PASSWORD": "not-it"}, "submit", "x")
    assert wrong.returncode != 0 and "wrong user name or password" in wrong.stderr
    assert "not-it" not in wrong.stderr + wrong.stdout
