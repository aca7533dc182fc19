"""Which system prompt a task runs with, and what to record about it on its AgentOutputs.

The runner asks `choose(task)`. The prompt is named after the task's capability (`coding`,
`review`, ...). If an experiment runs on that prompt, the variant comes from its mode (sticky
split, or Thompson sampling from the variants' posteriors); else the primary version is used;
if the registry has no such prompt, the runner keeps its built-in prompt. The registry is read
into a cache that is refreshed after `ttl_s`, and at once after `invalidate()` (called when a
PromptDecision arrives), so a promotion takes effect on the next task. If the registry cannot be
read, the last view is kept (none yet: the built-in prompts), so a database outage does not stop
tasks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.assignment import split_variant, thompson_variant
from agents.prompt_registry import Experiment, PromptRegistry, PromptVersion, RegistryError, variant_version
from agents.prompt_templates import render
from schemas.events import DEFAULT_CAPABILITY, tenant_of

__all__ = ["ChosenPrompt", "PromptChooser", "prompt_variables"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChosenPrompt:
    """The rendered system prompt and the fields to record (experiment, variant, prompt version)."""

    system: str
    metadata: dict[str, str]


@dataclass
class _Snapshot:
    versions: dict[tuple[str, int], PromptVersion] = field(default_factory=dict)
    primary: dict[str, int] = field(default_factory=dict)
    running: dict[str, Experiment] = field(default_factory=dict)  # by prompt name
    posteriors: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)  # bandit experiments


class PromptChooser:
    """Chooses prompt versions from a cached view of the registry."""

    def __init__(self, registry: PromptRegistry, ttl_s: float = 1.0, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.ttl_s = ttl_s
        self._rng = rng or random.Random()
        self._clock = clock
        self._snapshot: _Snapshot | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Forget the cache: the next task reads the registry again."""
        self._snapshot = None

    def load(self) -> _Snapshot:
        """Read the registry (blocking): every version, the primaries, running experiments."""
        snap = _Snapshot()
        for v in self.registry.versions():
            snap.versions[(v.name, v.version)] = v
            if v.is_primary:
                snap.primary[v.name] = v.version
        for exp in self.registry.experiments("running"):
            snap.running[exp.prompt] = exp
            if exp.mode == "bandit":
                arms = self.registry.arm_stats(exp.name)
                snap.posteriors[exp.name] = {
                    var: _posterior(arms.get(var, {}), exp.metric) for var in exp.variants}
        return snap

    async def _current(self) -> _Snapshot:
        async with self._lock:
            if self._snapshot is None or self._clock() - self._loaded_at > self.ttl_s:
                try:
                    self._snapshot = await asyncio.to_thread(self.load)
                except Exception as exc:  # registry unreachable: tasks go on with what we knew (or built-ins)
                    log.warning("prompt registry unreachable, keeping the cached view: %s: %s",
                                type(exc).__name__, exc)
                    self._snapshot = self._snapshot or _Snapshot()
                self._loaded_at = self._clock()
            return self._snapshot

    async def choose(self, task: dict[str, Any]) -> ChosenPrompt | None:
        snap = await self._current()
        return self.choose_from(snap, task)

    def choose_from(self, snap: _Snapshot, task: dict[str, Any]) -> ChosenPrompt | None:
        name = task.get("capability") or DEFAULT_CAPABILITY
        meta: dict[str, str] = {"prompt": name}
        exp = snap.running.get(name)
        pinned = _pinned_version(task, name)
        if pinned is not None and (name, pinned) in snap.versions:
            # An evaluation run (`agentstream replay --prompt NAME=VERSION`) pins a version: no experiment.
            version = pinned
            meta["pinned"] = "true"
        elif exp is not None:
            if exp.mode == "bandit":
                variant = thompson_variant(snap.posteriors.get(exp.name, {}) or
                                           {v: (0.0, 0.0) for v in exp.variants}, self._rng)
            else:
                variant = split_variant(exp.name, task["task_id"], exp.variants, exp.weights)
            version = variant_version(variant)
            meta.update(experiment=exp.name, variant=variant)
        elif name in snap.primary:
            version = snap.primary[name]
        else:
            return None
        meta["prompt_version"] = str(version)
        template = snap.versions[(name, version)].template
        return ChosenPrompt(render(template, prompt_variables(task, name)), meta)


def prompt_variables(task: dict[str, Any], name: str) -> dict[str, str]:
    """The variables a template of prompt `name` is rendered with for `task` (and the only ones it may use)."""
    return {"task": task.get("description", ""), "capability": name, "tenant": tenant_of(task),
            "task_id": task["task_id"]}


def _pinned_version(task: dict[str, Any], name: str) -> int | None:
    """The version a task's metadata pins for prompt `name` (`prompt.NAME` = `v2` or `2`), if any."""
    pinned = (task.get("metadata") or {}).get(f"prompt.{name}")
    if pinned is None:
        return None
    try:
        return variant_version(pinned)
    except RegistryError:
        log.warning("ignoring prompt pin %r for %s: not a version", pinned, name)
        return None


def _posterior(stats: dict[str, Any], metric: str) -> tuple[float, float]:
    n = float(stats.get("n", 0))
    good = float(stats.get("successes", 0) if metric == "success" else stats.get("quality_sum", 0.0))
    return good, max(n - good, 0.0)
