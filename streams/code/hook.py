"""`git-hook install`: a post-commit hook that sends the new commit to code.changes.

The hook runs the absolute path of the `agentstream` in use, in the background, with a time limit,
and always exits 0: a commit never fails or waits because the stack is down. The settings that say
where the stack is (data folder, Kafka address, topic prefix) are written into the hook as defaults,
since a hook runs in the repository's folder, not the installer's. Every value is a single-quoted shell
word in a plain assignment (`K='v'`), never inside double quotes or a `${K=...}` expansion, where `$(...)`
and backquotes would still run: a topic prefix such as `$(touch /tmp/x)` stays text.
"""

from __future__ import annotations

import shlex
import shutil
import stat
import sys
from pathlib import Path

from streams.code.git import run_git
from streams.settings import Settings

__all__ = ["MARKER", "agentstream_executable", "install_hook"]

MARKER = "# installed by agentstream git-hook"


def agentstream_executable() -> str:
    """The absolute path of the `agentstream` script next to this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "agentstream"
    if beside.exists():
        return str(beside)
    found = shutil.which("agentstream")
    if found is None:
        raise FileNotFoundError("no `agentstream` executable found next to Python or on PATH")
    return str(Path(found).resolve())


def _hook_text(settings: Settings, repo: Path, log_path: Path, executable: str) -> str:
    defaults = {"AGENTSTREAM_DATA_DIR": str(settings.data_dir.resolve()),
                "AGENTSTREAM_KAFKA_PORT": str(settings.kafka_port),
                "AGENTSTREAM_TOPIC_PREFIX": settings.topic_prefix}
    if settings.kafka_bootstrap_servers:
        defaults["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    lines = ["#!/bin/sh", MARKER, "# Sends the new commit to code.changes; never fails or delays the commit."]
    lines += [f'if [ -z "${{{k}+set}}" ]; then {k}={shlex.quote(v)}; fi; export {k}' for k, v in defaults.items()]
    log = shlex.quote(str(log_path))
    cmd = f"{shlex.quote(executable)} git-watch {shlex.quote(str(repo))} --commit HEAD"
    limit = "timeout 120 " if shutil.which("timeout") else ""
    lines += [f"( {limit}{cmd} >>{log} 2>&1 || echo \"agentstream git-watch failed (is the stack up?)\" "
              f">>{log} ) </dev/null >/dev/null 2>&1 &", "exit 0", ""]
    return "\n".join(lines)


def install_hook(settings: Settings, path: Path, *, force: bool = False) -> Path:
    """Write `.git/hooks/post-commit` of the repository at `path`; refuse to replace a foreign hook."""
    repo = Path(run_git(path, "rev-parse", "--show-toplevel").strip())
    hooks = Path(run_git(repo, "rev-parse", "--absolute-git-dir").strip()) / "hooks"
    hook = hooks / "post-commit"
    if hook.exists() and MARKER not in hook.read_text(errors="replace") and not force:
        raise FileExistsError(f"{hook} exists and was not written by agentstream (use --force to replace it)")
    hooks.mkdir(parents=True, exist_ok=True)
    hook.write_text(_hook_text(settings, repo, hooks.parent / "agentstream-hook.log", agentstream_executable()))
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return hook
