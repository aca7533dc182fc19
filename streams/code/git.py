"""Read commits of a git repository as CodeChange records, with `git` itself (no library)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from agents.clock import now_ms
from agents.redaction import redact

__all__ = ["DEFAULT_PATCH_LIMIT", "GitError", "commit_shas", "module_name", "read_commit", "repo_root", "run_git"]

DEFAULT_PATCH_LIMIT = 20_000
_CUT_MARGIN = 8_192  # redacted past the cut too, so a secret across it is found whole
_KIND = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "C": "added", "T": "modified"}


class GitError(RuntimeError):
    """git failed (not a repository, unknown revision, ...); the message is git's own."""


def run_git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def repo_root(path: Path) -> Path:
    """The top folder of the repository holding `path`."""
    return Path(run_git(path, "rev-parse", "--show-toplevel").strip())


def commit_shas(repo: Path, since: str | None = None, only: str | None = None) -> list[str]:
    """Commits oldest first: all reachable from HEAD, those after `since` (`since..HEAD`), or just `only`."""
    if only is not None:
        return [run_git(repo, "rev-parse", "--verify", f"{only}^{{commit}}").strip()]
    spec = f"{since}..HEAD" if since else "HEAD"
    return run_git(repo, "rev-list", "--reverse", spec).split()


def _files(repo: Path, sha: str) -> list[dict[str, Any]]:
    """Changed files with kind and line counts (against the first parent; binary files count 0 lines)."""
    base = ["show", "--format=", "-M", "-z", "--first-parent", sha]
    kinds = run_git(repo, *base, "--name-status").split("\0")
    files: dict[str, dict[str, Any]] = {}
    i = 0
    while i < len(kinds) - 1:
        status = kinds[i]
        if not status:
            i += 1
            continue
        if status[0] in "RC":
            path, i = kinds[i + 2], i + 3
        else:
            path, i = kinds[i + 1], i + 2
        files[path] = {"path": path, "change": _KIND.get(status[0], "modified"), "added": 0, "removed": 0}
    counts = run_git(repo, *base, "--numstat").split("\0")
    i = 0
    while i < len(counts):
        fields = counts[i].lstrip("\n").split("\t")
        if len(fields) < 3:
            i += 1
            continue
        added, removed, path = fields
        if path == "":  # a rename: the old and new paths follow
            path, i = counts[i + 2], i + 3
        else:
            i += 1
        if path in files:
            files[path]["added"] = int(added) if added.isdigit() else 0
            files[path]["removed"] = int(removed) if removed.isdigit() else 0
    return list(files.values())


def read_commit(repo: Path, sha: str, repository: str, patch_limit: int = DEFAULT_PATCH_LIMIT) -> dict[str, Any]:
    """One CodeChange record for commit `sha`; message and patch redacted, the patch cut to `patch_limit`
    characters (redacted with some text beyond the cut, so a secret across it is found whole)."""
    head = run_git(repo, "show", "-s", "--format=%H%x00%an <%ae>%x00%ct%x00%B", sha)
    full, author, seconds, message = head.split("\0", 3)
    patch = run_git(repo, "show", "--format=", "--first-parent", "-M", "--patch", sha)
    return {
        "sha": full.strip(),
        "repository": repository,
        "author": author,
        "committed_at": int(seconds) * 1000,
        "message": redact(message.strip()),
        "files": _files(repo, sha),
        "patch": redact(patch[:patch_limit + _CUT_MARGIN])[:patch_limit],
        "patch_truncated": len(patch) > patch_limit,
        "created_at": now_ms(),
    }


def module_name(path: str) -> str | None:
    """`streams/code/git.py` -> `streams.code.git`, a package's `__init__.py` -> the package; None if not Python."""
    if not path.endswith(".py"):
        return None
    parts = path[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or None
