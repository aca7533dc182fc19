"""Tools over MCP for the agent loop (issue 15): the config file, the client pool, executing and recording
tool calls, and coordination plans. Nothing here reads the environment; the worker builds it from Settings
(streams/tools/)."""

from __future__ import annotations

from dataclasses import dataclass

from agents.tools.calls import ToolExecutor
from agents.tools.config import ToolConfig

__all__ = ["ToolKit"]


@dataclass(frozen=True)
class ToolKit:
    """What the task runner needs to run plans: the config (servers, plans) and the executor over the pool."""

    config: ToolConfig
    executor: ToolExecutor
