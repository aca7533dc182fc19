"""The tool pool of a process, from the settings: the MCP config file, the servers' environment (these
settings, so a server run for a test or a replay sees the same topic prefix, database and workspace)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from agents.tools.config import ToolConfig, load_tools
from agents.tools.pool import ToolPool
from streams.settings import Settings

__all__ = ["replay_tool_settings", "server_env", "tool_config", "tool_pool"]


def tool_config(settings: Settings) -> ToolConfig:
    return load_tools(settings.tools_file)


def server_env(settings: Settings) -> dict[str, str]:
    """What a stdio server starts with: this process's environment (PATH, PYTHONPATH) and the settings."""
    settings.tools_workspace_dir.mkdir(parents=True, exist_ok=True)
    return {**os.environ, **settings.as_env(), "AGENTSTREAM_TOOLS_WORKSPACE": str(settings.tools_workspace_dir)}


def tool_pool(settings: Settings, config: ToolConfig | None = None) -> ToolPool:
    """The pool over the configured servers (not started yet)."""
    return ToolPool(config or tool_config(settings), server_env(settings),
                    start_timeout_s=settings.tools_start_timeout_s, errlog=sys.__stderr__)


def replay_tool_settings(isolated: Settings, live_tools: bool, folder: Path) -> Settings:
    """A replay's tools: by default only the results the ledger recorded (no tool is called); with live tools,
    calls made again against a copy of the workspace (in the run's folder), nothing written to the ledger."""
    if not live_tools:
        return isolated.model_copy(update={"tools_mode": "recorded"})
    copy = folder / "workspace"
    if copy.exists():
        shutil.rmtree(copy)
    source = isolated.tools_workspace_dir
    if source.exists():
        shutil.copytree(source, copy, symlinks=True)
    else:
        copy.mkdir(parents=True)
    return isolated.model_copy(update={"tools_mode": "live", "tools_record": False, "tools_workspace": copy})
