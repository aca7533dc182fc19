"""Which system prompt a task runs with, and what to record about it on its AgentOutputs.

The runner asks `choose(task)`. The prompt is named after the task's capability (`coding`,
`review`, ...). If an experiment runs on that prompt, the variant comes from its mode (sticky
split, or Thompson sampling from the variants' posteriors); else the primary version is used;
if the registry has no such prompt, the runner keeps its built-in prompt. The registry is read
into a cache that is refreshed after `ttl_s`, and at once after `invalidate()` (called when a
PromptDecision arrives), so a promotion takes effect on the next task. If the registry cannot be
read, the last view is kept (none yet: the built-in prompts), so a database outage does not stop
tasks. A template that cannot be rendered for a task within the limits (agents/prompt_templates.py)
leaves that task with the built-in prompt; one that ran out of time is not rendered again.
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
from agents.clock import now_ms
from agents.prompt_registry import Experiment, PromptRegistry, PromptVersion, RegistryError, variant_version
from agents.prompt_templates import DEFAULT_LIMITS, RenderLimits, TemplateLimitError, TemplateRenderError, render
from schemas.events import DEFAULT_CAPABILITY, tenant_of

__all__ = ["ChosenPrompt", "PromptChooser"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChosenPrompt:
    """The rendered system prompt and the fields to record (experiment, variant, prompt version)."""

    system: str
    metadata: dict[str, str]


@dataclass
class _Snapshot:
    versions: dict[tuple[str, int], PromptVersion] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)  # every prompt name with a version
    primary: dict[str, int] = field(default_factory=dict)
    running: dict[str, Experiment] = field(default_factory=dict)  # by prompt name
    posteriors: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)  # bandit experiments


class PromptChooser:
    """Chooses prompt versions from a cached view of the registry."""

    def __init__(self, registry: PromptRegistry, ttl_s: float = 1.0, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic, limits: RenderLimits = DEFAULT_LIMITS) -> None:
        self.registry = registry
        self.ttl_s = ttl_s
        self.limits = limits
        self._too_slow: set[tuple[str, int]] = set()  # versions that ran out of time once: not rendered again
        self._rng = rng or random.Random()
        self._clock = clock
        self._snapshot: _Snapshot | None = None
        self._loaded_at = 0.0
        self._read_at_ms = 0  # when the cached view was read (epoch ms), to compare with tasks' created_at
        self._unreachable = False  # the last read of the registry failed
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Forget the cache: the next task reads the registry again."""
        self._snapshot = None

    def load(self) -> _Snapshot:
        """Read the registry (blocking): every version, the primaries, running experiments."""
        snap = _Snapshot()
        for v in self.registry.versions():
            snap.versions[(v.name, v.version)] = v
            snap.names.add(v.name)
            if v.is_primary:
                snap.primary[v.name] = v.version
        for exp in self.registry.experiments("running"):
            snap.running[exp.prompt] = exp
            if exp.mode == "bandit":
                arms = self.registry.arm_stats(exp.name)
                snap.posteriors[exp.name] = {
                    var: _posterior(arms.get(var, {}), exp.metric) for var in exp.variants}
        return snap

    async def _current(self, read_before_ms: int | None = None) -> _Snapshot:
        """The cached view; read again when it expired, or was read before `read_before_ms` (epoch ms)."""
        async with self._lock:
            if (self._snapshot is None or self._clock() - self._loaded_at > self.ttl_s
                    or (read_before_ms is not None and self._read_at_ms < read_before_ms)):
                self._read_at_ms = now_ms()
                try:
                    self._snapshot = await asyncio.to_thread(self.load)
                    self._unreachable = False
                except Exception as exc:  # registry unreachable: tasks go on with what we knew (or built-ins)
                    self._unreachable = True
                    log.warning("prompt registry unreachable, keeping the cached view: %s: %s",
                                type(exc).__name__, exc)
                    self._snapshot = self._snapshot or _Snapshot()
                self._loaded_at = self._clock()
            return self._snapshot

    async def has_prompt(self, name: str, asked_at_ms: int | None = None) -> bool:
        """Whether the registry holds a prompt called `name` (a task's capability may name one).

        A name the cached view lacks is looked up again if the view was read before `asked_at_ms`
        (the task's created_at), so a prompt added just before its tasks were sent is found; tasks
        older than the view cost no read."""
        if name in (await self._current()).names:
            return True
        if asked_at_ms is not None and self._read_at_ms < asked_at_ms:
            if name in (await self._current(read_before_ms=asked_at_ms)).names:
                return True
        # Not known, but the registry could not be read: a name it may hold is not rejected (the task
        # runs on the built-in prompt, as every task does while the registry is down).
        return self._unreachable

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
        variables = {"task": task.get("description", ""), "capability": name,
                     "tenant": tenant_of(task), "task_id": task["task_id"]}
        if (name, version) in self._too_slow:
            return None
        try:
            return ChosenPrompt(render(template, variables, self.limits), meta)
        except TemplateRenderError as exc:  # the task goes on with the agent's own prompt
            if isinstance(exc, TemplateLimitError) and exc.limit == "time":
                self._too_slow.add((name, version))
            log.warning("prompt %s v%s not rendered, the agent's own prompt is used: %s", name, version, exc)
            return None


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
