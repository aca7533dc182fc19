"""The workspace folder the tool servers are confined to: every path is resolved (symlinks followed) and
must stay inside it, or the call is refused."""

from __future__ import annotations

from pathlib import Path

from streams.settings import Settings

__all__ = ["OutsideWorkspace", "Workspace", "workspace_of"]


class OutsideWorkspace(ValueError):
    """A path that leads out of the workspace."""


class Workspace:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    def path(self, relative: str) -> Path:
        """`relative` inside the workspace (absolute paths are taken as they are, then checked)."""
        target = (self.root / relative).resolve()
        if target != self.root and self.root not in target.parents:
            raise OutsideWorkspace(f"refused: {relative!r} is outside the workspace")
        return target

    def show(self, path: Path) -> str:
        return str(path.relative_to(self.root)) or "."


def workspace_of(settings: Settings) -> Workspace:
    return Workspace(settings.tools_workspace_dir)
