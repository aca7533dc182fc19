"""The MCP config file (agents/data/mcp.yaml, or the file a setting names): servers and coordination plans.

A server is reached over stdio (a command the pool starts) or streamable HTTP (a URL the pool connects to);
it has capabilities (a plan step may ask for "the best server for research" rather than name one), a priority
(the highest wins among servers with a capability) and a per-call timeout. A plan is a `sequence`, a
`parallel` fan-out whose branch answers an aggregator agent synthesises, or a `dag` whose steps name what
they depend on. A mistake fails at load with a ConfigError naming the file, the entry and the field.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from agents.models import ConfigError
from schemas.events import CAPABILITIES

__all__ = ["PLAN_KINDS", "PlanSpec", "PlanStep", "ServerSpec", "ToolConfig", "default_tools_file", "load_tools"]

PLAN_KINDS = ("sequence", "parallel", "dag")


@dataclass(frozen=True)
class ServerSpec:
    """One MCP server: how to reach it, what it is good for, how long one call may take."""

    name: str
    command: tuple[str, ...] = ()  # stdio: argv; "{python}" is this interpreter
    url: str | None = None  # streamable HTTP
    capabilities: frozenset[str] = frozenset()
    priority: int = 0
    timeout_s: float = 30.0

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def argv(self) -> list[str]:
        return [sys.executable if part == "{python}" else part for part in self.command]

    def describe(self) -> str:
        return self.url or " ".join(self.argv())


@dataclass(frozen=True)
class PlanStep:
    """One agent of a plan: its capability, the servers whose tools it is offered, what it waits for."""

    name: str
    capability: str = "research"
    servers: tuple[str, ...] = ()
    tool_capabilities: tuple[str, ...] = ()  # each: the highest-priority server that has it
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanSpec:
    """A coordination plan, named by a task's `plan` field."""

    name: str
    kind: str
    steps: tuple[PlanStep, ...]
    timeout_s: float = 60.0
    call_timeout_s: float | None = None  # caps every server's own per-call timeout within this plan
    aggregator: str | None = None  # parallel: the capability of the agent that synthesises the branches
    max_rounds: int = 4

    def ordered(self) -> list[list[PlanStep]]:
        """The steps in waves: a wave's steps run together once every earlier wave is done."""
        if self.kind == "sequence":
            return [[s] for s in self.steps]
        if self.kind == "parallel":
            return [list(self.steps)]
        done: set[str] = set()
        waves: list[list[PlanStep]] = []
        left = list(self.steps)
        while left:
            wave = [s for s in left if set(s.depends_on) <= done]
            waves.append(wave)
            if not wave:  # a cycle: nothing can start (the loader refuses such a plan)
                break
            done |= {s.name for s in wave}
            left = [s for s in left if s.name not in done]
        return waves


@dataclass(frozen=True)
class ToolConfig:
    servers: tuple[ServerSpec, ...]
    plans: dict[str, PlanSpec]

    def server(self, name: str) -> ServerSpec:
        return next(s for s in self.servers if s.name == name)

    def servers_for(self, step: PlanStep) -> list[str]:
        """The servers a step's agent is offered: those it names, then the best one per capability it asks."""
        chosen = list(step.servers)
        for capability in step.tool_capabilities:
            able = sorted((s for s in self.servers if capability in s.capabilities), key=lambda s: -s.priority)
            if able and able[0].name not in chosen:
                chosen.append(able[0].name)
        return chosen


def default_tools_file() -> Path:
    return Path(str(resources.files("agents").joinpath("data/mcp.yaml")))


def _strings(path: Path, entry: str, raw: dict[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(path, entry, key, "must be a list of strings")
    return tuple(value)


def _number(path: Path, entry: str, raw: dict[str, Any], key: str, default: float | None) -> float | None:
    value = raw.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
        raise ConfigError(path, entry, key, f"must be a positive number, got {value!r}")
    return None if value is None else float(value)


def _server(path: Path, n: int, raw: Any) -> ServerSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ConfigError(path, f"servers[{n}]", "name", "must be a non-empty string")
    entry = f"server {raw['name']!r}"
    extra = sorted(set(raw) - {"name", "command", "url", "capabilities", "priority", "timeout_s"})
    if extra:
        raise ConfigError(path, entry, extra[0], "unknown field")
    command, url = _strings(path, entry, raw, "command"), raw.get("url")
    if bool(command) == bool(url):
        raise ConfigError(path, entry, "command", "give exactly one of `command` (stdio) and `url` (streamable HTTP)")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise ConfigError(path, entry, "url", f"must be an http(s) URL, got {url!r}")
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigError(path, entry, "priority", f"must be an integer, got {priority!r}")
    return ServerSpec(raw["name"], command, url, frozenset(_strings(path, entry, raw, "capabilities")), priority,
                      _number(path, entry, raw, "timeout_s", 30.0) or 30.0)


def _step(path: Path, plan: str, n: int, raw: Any, servers: set[str]) -> PlanStep:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ConfigError(path, f"plan {plan!r} steps[{n}]", "name", "must be a non-empty string")
    entry = f"plan {plan!r} step {raw['name']!r}"
    extra = sorted(set(raw) - {"name", "capability", "servers", "tool_capabilities", "depends_on"})
    if extra:
        raise ConfigError(path, entry, extra[0], "unknown field")
    capability = raw.get("capability", "research")
    if capability not in CAPABILITIES:
        raise ConfigError(path, entry, "capability", f"unknown {capability!r}; known: {sorted(CAPABILITIES)}")
    named = _strings(path, entry, raw, "servers")
    if set(named) - servers:
        raise ConfigError(path, entry, "servers", f"not configured: {sorted(set(named) - servers)}")
    return PlanStep(raw["name"], capability, named, _strings(path, entry, raw, "tool_capabilities"),
                    _strings(path, entry, raw, "depends_on"))


def _plan(path: Path, name: str, raw: Any, servers: set[str]) -> PlanSpec:
    entry = f"plan {name!r}"
    if not isinstance(raw, dict):
        raise ConfigError(path, entry, "*", "must be a mapping")
    extra = sorted(set(raw) - {"kind", "steps", "timeout_s", "call_timeout_s", "aggregator", "max_rounds"})
    if extra:
        raise ConfigError(path, entry, extra[0], "unknown field")
    kind = raw.get("kind")
    if kind not in PLAN_KINDS:
        raise ConfigError(path, entry, "kind", f"must be one of {PLAN_KINDS}, got {kind!r}")
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise ConfigError(path, entry, "steps", "must be a non-empty list")
    steps = tuple(_step(path, name, n, s, servers) for n, s in enumerate(steps_raw))
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ConfigError(path, entry, "steps", "step names must be distinct")
    for step in steps:
        if step.depends_on and kind != "dag":
            raise ConfigError(path, entry, "depends_on", f"only a dag's steps depend on others ({step.name!r})")
        unknown = sorted(set(step.depends_on) - set(names))
        if unknown:
            raise ConfigError(path, entry, "depends_on", f"{step.name!r} depends on unknown {unknown}")
    aggregator = raw.get("aggregator")
    if kind == "parallel" and aggregator not in CAPABILITIES:
        raise ConfigError(path, entry, "aggregator",
                          f"a parallel plan needs an aggregator capability, got {aggregator!r}")
    rounds = raw.get("max_rounds", 4)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 20:
        raise ConfigError(path, entry, "max_rounds", f"must be an integer in 1..20, got {rounds!r}")
    plan = PlanSpec(name, kind, steps, _number(path, entry, raw, "timeout_s", 60.0) or 60.0,
                    _number(path, entry, raw, "call_timeout_s", None), aggregator, rounds)
    if sum(len(w) for w in plan.ordered()) != len(steps) or any(not w for w in plan.ordered()):
        raise ConfigError(path, entry, "depends_on", "the steps' dependencies form a cycle")
    return plan


def load_tools(path: Path | str | None = None) -> ToolConfig:
    """Read and check the MCP config (the packaged one when `path` is None)."""
    path = Path(path or default_tools_file())
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(path, "file", "*", f"cannot be read: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(path, "file", "*", "must be a mapping with `servers` and `plans`")
    servers_raw = raw.get("servers") or []
    if not isinstance(servers_raw, list):
        raise ConfigError(path, "file", "servers", "must be a list")
    servers = tuple(_server(path, n, s) for n, s in enumerate(servers_raw))
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise ConfigError(path, "file", "servers", "server names must be distinct")
    for name in names:
        if "__" in name or not name.replace("_", "a").replace("-", "a").isalnum():
            raise ConfigError(path, f"server {name!r}", "name", "letters, digits, '-' and single '_' only")
    plans_raw = raw.get("plans") or {}
    if not isinstance(plans_raw, dict):
        raise ConfigError(path, "file", "plans", "must be a mapping of plan name to plan")
    plans = {str(k): _plan(path, str(k), v, set(names)) for k, v in plans_raw.items()}
    return ToolConfig(servers, plans)
