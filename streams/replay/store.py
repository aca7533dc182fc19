"""Replay runs on disk: `<data_dir>/runs/<name>/run.json` (what was run) and `results.jsonl` (one row a task).

A row holds what the comparison needs: task_id, description, status, output, model, judge score,
cost, latency, and the prompt version that answered. Plain files keep runs out of every production
table and easy to diff or archive.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streams.settings import Settings

__all__ = ["Run", "TaskRow", "load_run", "run_dir", "save_run"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class TaskRow:
    """One replayed (or original) task and how it went."""

    task_id: str
    description: str
    status: str
    output: str
    model: str
    score: float
    cost_usd: float
    latency_ms: float
    judge_model: str = ""
    judge_cost_usd: float = 0.0
    prompt: str = ""  # NAME=VERSION of the registry prompt that answered ("" for an agent's built-in prompt)


@dataclass
class Run:
    """A named evaluation run: its parameters and one row per task."""

    name: str
    meta: dict[str, Any]
    rows: list[TaskRow] = field(default_factory=list)


def run_dir(settings: Settings, name: str) -> Path:
    """Where the run `name` is kept; the name is checked so it cannot leave the runs folder."""
    if not _NAME.match(name):
        raise ValueError(f"bad run name {name!r}: letters, digits, '.', '_' and '-' only (max 64)")
    return settings.data_dir / "runs" / name


def save_run(settings: Settings, run: Run) -> Path:
    """Write (or overwrite) the run; return its folder."""
    folder = run_dir(settings, run.name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"name": run.name, **run.meta}, indent=2, sort_keys=True) + "\n")
    with open(folder / "results.jsonl", "w") as out:
        for row in run.rows:
            out.write(json.dumps(asdict(row), sort_keys=True) + "\n")
    return folder


def load_run(settings: Settings, name: str) -> Run:
    """Read a saved run; a clear error when there is none of that name."""
    folder = run_dir(settings, name)
    if not (folder / "run.json").exists():
        raise FileNotFoundError(f"no replay run named {name!r} under {folder.parent}")
    meta = json.loads((folder / "run.json").read_text())
    meta.pop("name", None)
    rows = [TaskRow(**json.loads(line)) for line in (folder / "results.jsonl").read_text().splitlines() if line]
    return Run(name, meta, rows)
