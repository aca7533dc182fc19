"""A small git repository made by a test, commit by commit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["GitRepo"]


class GitRepo:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = 1_767_225_600  # 2026-01-01 UTC; each commit a minute later, so commit times never tie
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.name", "Test Author")
        self.git("config", "user.email", "author@example.invalid")
        self.git("config", "commit.gpgsign", "false")

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        return subprocess.run(["git", "-C", str(self.path), *args], capture_output=True, text=True,
                              check=True, env=env).stdout

    def commit(self, message: str, files: dict[str, str | bytes | None]) -> str:
        """Write (or, for None, delete) files, commit them all, return the sha."""
        for name, content in files.items():
            target = self.path / name
            if content is None:
                self.git("rm", "-q", name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
            self.git("add", name)
        self.clock += 60
        stamp = f"{self.clock} +0000"
        self.git("commit", "-q", "-m", message, env={**os.environ, "GIT_AUTHOR_DATE": stamp,
                                                      "GIT_COMMITTER_DATE": stamp})
        return self.git("rev-parse", "HEAD").strip()
