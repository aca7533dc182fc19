"""Agent specs, loaded from TOML, and the registry that finds the agent for a capability.

A bad spec fails at start with a ConfigError naming the file, the agent and the field, not at the
first task that happens to need that agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from agents.models import ConfigError, ModelInfo, read_entries
from schemas.events import CAPABILITIES

__all__ = ["AgentRegistry", "AgentSpec", "default_agents_file", "load_agents"]



@dataclass(frozen=True)
class AgentSpec:
    """One LLM agent: what it can do, which models it may use, and how many calls it may have in flight."""

    name: str
    capabilities: frozenset[str]
    prompt: str
    models: tuple[str, ...] = ()
    context_window: int = 8192
    max_output_tokens: int = 512
    concurrency: int = 64
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    memory: bool = True  # false: its calls get no recalled memories (and a task whose agents all say so recalls none)

    def price(self, tokens_in: int, tokens_out: int) -> float | None:
        """The agent's own price for a call, or None to take the model's (litellm's cost map)."""
        if self.input_cost_per_token is None or self.output_cost_per_token is None:
            return None
        return tokens_in * self.input_cost_per_token + tokens_out * self.output_cost_per_token


def _positive_int(path: Path | str, agent: str, raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(path, f"agent {agent!r}", key, f"must be a positive integer, got {value!r}")
    return value


def _price(path: Path | str, agent: str, raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
        raise ConfigError(path, f"agent {agent!r}", key, f"must be a non-negative number, got {value!r}")
    return None if value is None else float(value)


def _spec(path: Path | str, n: int, raw: Any, model_names: set[str] | None) -> AgentSpec:
    if not isinstance(raw, dict):
        raise ConfigError(path, f"agents[{n}]", "*", "must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(path, f"agents[{n}]", "name", "must be a non-empty string")
    entry = f"agent {name!r}"
    caps = raw.get("capabilities")
    if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
        raise ConfigError(path, entry, "capabilities", "must be a non-empty list of strings")
    unknown_caps = sorted(set(caps) - CAPABILITIES)
    if unknown_caps:
        raise ConfigError(path, entry, "capabilities", f"unknown {unknown_caps}; known: {sorted(CAPABILITIES)}")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError(path, entry, "prompt", "must be a non-empty string")
    models = raw.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ConfigError(path, entry, "models", "must be a list of model names")
    if model_names is not None and set(models) - model_names:
        raise ConfigError(path, entry, "models", f"not in the model table: {sorted(set(models) - model_names)}")
    known = {"name", "capabilities", "prompt", "models", "context_window", "max_output_tokens", "concurrency",
             "input_cost_per_token", "output_cost_per_token", "memory"}
    extra = sorted(set(raw) - known)
    if extra:
        raise ConfigError(path, entry, extra[0], "unknown field")
    if not isinstance(raw.get("memory", True), bool):
        raise ConfigError(path, entry, "memory", f"must be true or false, got {raw['memory']!r}")
    return AgentSpec(
        name=name,
        capabilities=frozenset(caps),
        prompt=prompt,
        models=tuple(models),
        context_window=_positive_int(path, name, raw, "context_window", 8192),
        max_output_tokens=_positive_int(path, name, raw, "max_output_tokens", 512),
        concurrency=_positive_int(path, name, raw, "concurrency", 64),
        input_cost_per_token=_price(path, name, raw, "input_cost_per_token"),
        output_cost_per_token=_price(path, name, raw, "output_cost_per_token"),
        memory=raw.get("memory", True),
    )


def default_agents_file() -> Path:
    return Path(str(resources.files("agents").joinpath("data/agents.toml")))


def load_agents(path: Path | str | None = None, models: tuple[ModelInfo, ...] | None = None) -> tuple[AgentSpec, ...]:
    """Read `[[agents]]` from a TOML file (the packaged six when `path` is None); validate every field."""
    path = path or default_agents_file()
    entries = read_entries(path, "agents")
    names = {m.name for m in models} if models is not None else None
    specs = tuple(_spec(path, n, raw, names) for n, raw in enumerate(entries))
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ConfigError(path, f"agent {spec.name!r}", "name", "appears twice")
        seen.add(spec.name)
    return specs


class AgentRegistry:
    """The loaded agents, by name and by capability (the first agent listed for a capability wins)."""

    def __init__(self, specs: tuple[AgentSpec, ...]) -> None:
        self.specs = specs
        self.by_name = {s.name: s for s in specs}

    def get(self, name: str) -> AgentSpec:
        return self.by_name[name]

    def for_capability(self, capability: str) -> AgentSpec:
        """The agent for a capability; an unknown capability goes to the first agent (a generalist)."""
        return next((s for s in self.specs if capability in s.capabilities), self.specs[0])

    def require(self, *capabilities: str) -> None:
        """Fail at start if a pattern needs a capability no agent has."""
        missing = [c for c in capabilities if not any(c in s.capabilities for s in self.specs)]
        if missing:
            raise ValueError(f"no agent has the capabilities {missing} that the swarm patterns need")
