"""`agentstream up`, `down` and `status`: the local stack on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from streams.settings import Settings

__all__ = ["down", "status", "up"]

def _print_parts(parts: list[Any]) -> None:
    for part in parts:
        click.echo(f"{part.name:<9} {part.address:<28} {part.state}")


def _stack_call(settings: Settings, action: str, with_s3: bool = False) -> list[Any]:
    from streams.devstack import LocalStack, StackError

    try:
        return getattr(LocalStack(settings, with_s3=with_s3), action)()
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.option("--with-s3", is_flag=True, help="Also start a local S3-API server (moto) for the boto3 archive path.")
@click.pass_obj
def up(settings: Settings, with_s3: bool) -> None:
    """Start the local stack (Kafka, PostgreSQL, Redis) on 127.0.0.1 and create the topics.

    Parts whose URL is set in the environment are used as they are. A second `up` does nothing.
    """
    from streams.admin import ensure_topics

    _print_parts(_stack_call(settings, "up", with_s3))
    created = asyncio.run(ensure_topics(settings))
    click.echo(f"topics    {len(created)} created" if created else "topics    all present")


@click.command()
@click.pass_obj
def down(settings: Settings) -> None:
    """Stop the parts of the local stack that `up` started (data stays in the data folder)."""
    _print_parts(_stack_call(settings, "down"))


@click.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """One line per part of the stack: name, address, state."""
    _print_parts(_stack_call(settings, "status"))


