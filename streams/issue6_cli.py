"""The commands of the replay and code-change areas, attached to the main `agentstream` group."""

from __future__ import annotations

import click

__all__ = ["register"]


def register(cli: click.Group) -> None:
    """Add `replay` (with `compare`) and the code-change commands to `cli`."""
    from streams.code.cli import docs, git_hook, git_watch
    from streams.replay.cli import replay

    for command in (replay, git_watch, git_hook, docs):
        cli.add_command(command)
