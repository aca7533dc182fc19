"""Validation at the door: a task that asks for something no worker knows is answered, never guessed at.

A typo such as `pattern: "qualty"` must not silently buy the wrong pattern. Before a task is run
(no model called, nothing charged) its pattern, capability and optimization must be values of the
shared vocabulary (schemas/events.py; an absent or empty one means the Avro default), its
description must say something, and its budget must be a finite number >= 0 (or none).
The runner answers a task with problems with a `rejected` TaskResult; `agentstream submit` refuses
it before producing. Both use `task_problems`, so the two cannot disagree.

A capability may also be the name of a prompt in the prompt registry (prompt experiments run tasks
under it): the caller that can see the registry passes those names in `prompts`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.events import (
    CAPABILITIES,
    DEFAULT_CAPABILITY,
    DEFAULT_OPTIMIZATION,
    DEFAULT_PATTERN,
    OPTIMIZATIONS,
    PATTERNS,
)

__all__ = ["Problem", "describe", "task_problems"]

_MAX_SHOWN = 80  # a value is shown up to this many characters


@dataclass(frozen=True)
class Problem:
    """One field of a task that cannot be run: its name, the value given and what is allowed."""

    field: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        shown = repr(self.value)
        if len(shown) > _MAX_SHOWN:
            shown = shown[: _MAX_SHOWN - 3] + "..."
        return f"{self.field} {shown} is not allowed: {self.allowed}"


def _choice(values: Collection[str], default: str) -> str:
    return f"one of {', '.join(values)} (absent or empty means {default})"


def task_problems(task: Mapping[str, Any], prompts: Collection[str] = ()) -> list[Problem]:
    """Every field of `task` that makes it unrunnable, in field order; empty when it may run.

    `prompts`: prompt names the registry holds, accepted as capabilities too."""
    problems: list[Problem] = []
    description = task.get("description")
    if not isinstance(description, str) or not description.strip():
        problems.append(Problem("description", description, "a non-empty text saying what to do"))
    pattern = task.get("pattern")
    if pattern and pattern not in PATTERNS:
        problems.append(Problem("pattern", pattern, _choice(PATTERNS, DEFAULT_PATTERN)))
    capability = task.get("capability")
    if capability and capability not in CAPABILITIES and capability not in prompts:
        problems.append(Problem("capability", capability,
                                f"{_choice(sorted(CAPABILITIES), DEFAULT_CAPABILITY)}, or a prompt "
                                "name in the prompt registry"))
    optimization = task.get("optimization")
    if optimization and optimization not in OPTIMIZATIONS:
        problems.append(Problem("optimization", optimization, _choice(OPTIMIZATIONS, DEFAULT_OPTIMIZATION)))
    budget = task.get("budget_usd")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float)
                               or not math.isfinite(budget) or budget < 0):
        problems.append(Problem("budget_usd", budget, "a finite number >= 0 in USD, or none for no limit"))
    return problems


def describe(problems: Collection[Problem]) -> str:
    """One line naming every problem, for a TaskResult's error or the CLI."""
    return "; ".join(str(p) for p in problems)
