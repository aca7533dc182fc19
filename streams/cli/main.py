"""The `agentstream` command line. Settings are built here, once, and passed down."""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from streams.settings import Settings

__all__ = ["main"]


def _settings() -> Settings:
    """The environment's settings; a Weaviate started by `up --with-weaviate` in the data folder is L2."""
    from streams.devstack.weaviate import with_embedded_weaviate

    try:
        return with_embedded_weaviate(Settings())
    except ValidationError as exc:
        raise click.ClickException(f"bad setting in the environment:\n{exc}") from exc


class _Commands(click.Group):
    """The command group: whatever fails in any command ends it through one error path
    (streams/cli/errors.py): one or two lines and exit code 1; the traceback only with --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get("agentstream.debug"):
                raise
            from streams.cli.errors import message_for

            raise click.ClickException(message_for(exc)) from exc


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Print the Python traceback of a failure instead of one line.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """agentstream: a Kafka-native runtime for LLM agent work.

    Every setting is an environment variable (see `agentstream settings`); with none set, the
    embedded local stack on 127.0.0.1 is used (`agentstream up`).
    """
    from streams.logs import configure_logging

    ctx.meta["agentstream.debug"] = debug
    ctx.obj = _settings()
    configure_logging(ctx.obj)


@cli.command()
@click.pass_obj
def settings(settings: Settings) -> None:
    """Print the settings in force (secrets masked)."""
    for name, value in settings.masked().items():
        click.echo(f"{name:<24} {value if value != '' else '(empty)'}")


# Each command group lives in a module of its own; attached here, after `cli` exists.
from streams.cli.code import docs, git_hook, git_watch  # noqa: E402
from streams.cli.control import alerts, control, risk  # noqa: E402
from streams.cli.memory import memory, sinks  # noqa: E402
from streams.cli.observe import dashboard, top, trace  # noqa: E402
from streams.cli.prompts import experiment, prompt  # noqa: E402
from streams.cli.replay import replay  # noqa: E402
from streams.cli.stack import down, status, tenant, up  # noqa: E402
from streams.cli.tasks import submit, tail, worker  # noqa: E402
from streams.cli.tooling import bench, demo  # noqa: E402
from streams.cli.tools import tools  # noqa: E402

for _command in (up, down, status, worker, submit, tail, demo, bench, sinks, memory, replay, git_watch, git_hook,
                 docs, prompt, experiment, trace, dashboard, top, tenant, control, alerts, risk, tools):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="agentstream")
