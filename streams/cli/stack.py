"""`agentstream up`, `down` and `status`: the local stack on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

import click
from pydantic import ValidationError

from streams.settings import Settings

__all__ = ["down", "status", "tenant", "up"]


def _print_parts(parts: list[Any]) -> None:
    for part in parts:
        click.echo(f"{part.name:<9} {part.address:<28} {part.state}")


def _stack_call(settings: Settings, action: str, with_s3: bool = False, secure: bool = False) -> list[Any]:
    from streams.devstack import LocalStack, StackError

    try:
        return getattr(LocalStack(settings, with_s3=with_s3, secure=secure), action)()
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc


def _settings_with(**overrides: Any) -> Settings:
    """The settings from the environment with some variables set differently (validators run again)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise click.ClickException(f"bad setting:\n{exc}") from exc


@click.command()
@click.option("--with-s3", is_flag=True, help="Also start a local S3-API server (moto) for the boto3 archive path.")
@click.option("--brokers", type=click.IntRange(1, 9), default=None,
              help="Kafka nodes (AGENTSTREAM_KAFKA_BROKERS); 3 gives replication 3 with min.insync.replicas 2.")
@click.option("--secure", is_flag=True,
              help="Kafka with a SASL_SSL listener only (SCRAM-SHA-512, a CA made here, ACLs): writes each "
                   "principal's client settings to <data folder>/secure/*.env. Once secured, it stays so.")
@click.option("--tenant", "tenants", multiple=True, metavar="NAME",
              help="With --secure: a tenant's principal and its own topics (repeat it; `tenant add` adds more).")
@click.pass_obj
def up(settings: Settings, with_s3: bool, brokers: int | None, secure: bool, tenants: tuple[str, ...]) -> None:
    """Start the local stack (Kafka, PostgreSQL, Redis) on 127.0.0.1 and create the topics.

    Parts whose URL is set in the environment are used as they are. A second `up` does nothing.
    """
    from streams.admin import ensure_topics
    from streams.devstack import LocalStack
    from streams.devstack.secure import SecureMaterial

    material = SecureMaterial(settings.data_dir.expanduser().resolve())
    secure = secure or material.enabled
    if tenants and not secure:
        raise click.UsageError("--tenant needs --secure (an open Kafka cannot keep one tenant off another's topic)")

    if brokers is not None and brokers != settings.kafka_brokers:
        # Built again so the settings that follow the node count (replication factor) follow it too.
        settings = _settings_with(AGENTSTREAM_KAFKA_BROKERS=brokers)
    running = LocalStack(settings).settings.kafka_brokers  # a bigger cluster already up in this folder
    if running != settings.kafka_brokers:
        settings = _settings_with(AGENTSTREAM_KAFKA_BROKERS=running)
    _print_parts(_stack_call(settings, "up", with_s3, secure))
    env_files: list[Any] = []
    if secure:
        env_files = _secure_principals(settings, material, tenants)
        settings = material.settings_for("worker", settings)
    created = asyncio.run(ensure_topics(settings))
    click.echo(f"topics    {len(created)} created" if created else "topics    all present")
    if env_files:
        click.echo("secure    SASL_SSL only, ACLs on; each principal's settings (load one before a command: "
                   "`set -a; . FILE; set +a`):")
        for path in env_files:
            click.echo(f"          {path}")
    if settings.kafka_brokers > 1 and settings.kafka_bootstrap_servers is None:
        nodes = settings.kafka_brokers
        click.echo(f"cluster   {nodes} Kafka nodes, topics with replication {settings.replication_factor}; "
                   f"other commands need AGENTSTREAM_KAFKA_BROKERS={nodes} too")


@click.command()
@click.pass_obj
def down(settings: Settings) -> None:
    """Stop the parts of the local stack that `up` started (data stays in the data folder)."""
    _print_parts(_stack_call(settings, "down"))


@click.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """One line per part of the stack: name, address, state; then every running worker and sink process
    of this data folder with its metrics URL."""
    from streams.observability.processes import running

    _print_parts(_stack_call(settings, "status"))
    for p in running(settings):
        click.echo(f"{p.role:<9} {p.metrics_url:<28} pid {p.pid}, app {p.app_id}")




def _secure_principals(settings: Settings, material: Any, tenants: tuple[str, ...]) -> list[Any]:
    """The worker's ACLs and each tenant's principal and topics; the env files written for them."""
    from streams.devstack import StackError
    from streams.devstack.principals import set_up

    try:
        return asyncio.run(set_up(settings, material, list(dict.fromkeys(_tenant_name(name) for name in tenants))))
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc


def _tenant_name(name: str) -> str:
    from schemas.events import normal_tenant

    try:
        return normal_tenant(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group()
def tenant() -> None:
    """Tenants of the secured local Kafka (`agentstream up --secure`)."""


@tenant.command("add")
@click.argument("name")
@click.pass_obj
def tenant_add(settings: Settings, name: str) -> None:
    """Add tenant NAME: a SCRAM login, its own task and result topics, ACLs that let it write only its task
    topic and read only its results, and `secure/tenant-NAME.env` with its client settings. Idempotent."""
    from streams.devstack.secure import SecureMaterial

    material = SecureMaterial(settings.data_dir.expanduser().resolve())
    if not material.enabled:
        raise click.ClickException("the local Kafka is not secured: start it with `agentstream up --secure`")
    paths = _secure_principals(settings, material, (name,))
    click.echo(f"tenant {_tenant_name(name)}: settings in {paths[-1]} (load them before `agentstream submit`)")
