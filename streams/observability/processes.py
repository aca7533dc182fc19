"""Which agentstream processes are running on this machine, and where each serves its metrics.

Each worker and sink process writes `<data folder>/processes/<role>-<pid>.json` when its metrics
endpoint is up and removes it when it exits; a file whose process is gone (killed) is removed by
the next reader. `agentstream status`, `top` and the dashboard read them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from streams.settings import Settings

__all__ = ["ProcessEntry", "register", "running", "unregister"]


@dataclass(frozen=True)
class ProcessEntry:
    role: str
    pid: int
    app_id: str
    metrics_url: str
    host: str
    started_at: float


def _folder(data_dir: Path) -> Path:
    return data_dir.expanduser().resolve() / "processes"


def register(settings: Settings, role: str, metrics_url: str) -> Path:
    """Say that this process runs, as `role`, with its metrics at `metrics_url`; returns the file written."""
    entry = ProcessEntry(role, os.getpid(), settings.app_id, metrics_url, socket.gethostname(), time.time())
    folder = _folder(settings.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{role}-{entry.pid}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(asdict(entry)))
    partial.replace(path)  # readers never see half a file
    return path


def unregister(path: Path) -> None:
    path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def running(settings: Settings, app_id: str | None = None) -> list[ProcessEntry]:
    """The processes of this data folder (of `app_id` only, when given) that are alive, oldest first."""
    folder = _folder(settings.data_dir)
    entries = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = ProcessEntry(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if entry.host == socket.gethostname() and not _alive(entry.pid):
            path.unlink(missing_ok=True)  # killed without cleaning up
            continue
        if app_id is None or entry.app_id == app_id:
            entries.append(entry)
    return sorted(entries, key=lambda e: e.started_at)
