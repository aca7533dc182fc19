"""The `agentstream` command line: one module per command group, attached in `streams.cli.main`."""

from streams.cli.main import main

__all__ = ["main"]
