"""Which modules of a repository have current documentation."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streams.code.git import module_name, repo_root, run_git

__all__ = ["Coverage", "module_coverage"]


@dataclass(frozen=True)
class Coverage:
    """State per module: `current`, `stale` (documented before its last change) or `missing`."""

    repository: str
    states: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.states)

    @property
    def current(self) -> int:
        return sum(1 for s in self.states.values() if s == "current")

    @property
    def stale(self) -> int:
        return sum(1 for s in self.states.values() if s == "stale")

    @property
    def share(self) -> float:
        return self.current / self.total if self.total else 0.0


def _is_ancestor(repo: Path, older: str, newer: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", older, newer],
                          capture_output=True, check=False).returncode == 0


def module_coverage(path: Path, documented: Callable[[str], dict[str, set[str]]]) -> Coverage:
    """Coverage of the Python modules tracked at HEAD; `documented(repository)` gives module -> doc shas."""
    root = repo_root(path)
    shas = documented(str(root))
    states: dict[str, str] = {}
    for file in run_git(root, "ls-files", "-z", "--", "*.py").split("\0"):
        module = module_name(file) if file else None
        if module is None:
            continue
        have = shas.get(module, set())
        if not have:
            states[module] = "missing"
            continue
        last = run_git(root, "log", "-1", "--format=%H", "--", file).strip()
        current = last in have or any(_is_ancestor(root, last, sha) for sha in have)
        states[module] = "current" if current else "stale"
    return Coverage(str(root), states)
