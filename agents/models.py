"""The model table: which models exist, what they cost, how good they are, and registering them.

The table is config: the simulator's three tiers are the packaged default, and a TOML file
(`[[models]]` entries, see `load_models`) can replace them, e.g. with real provider models.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SIMULATOR_MODELS", "ConfigError", "ModelInfo", "load_models", "read_entries", "register_models"]


class ConfigError(ValueError):
    """A config file is wrong; the message names the file, the entry and the field."""

    def __init__(self, path: Path | str, entry: str, field_name: str, problem: str) -> None:
        super().__init__(f"{path}: {entry}: field {field_name!r}: {problem}")
        self.path, self.entry, self.field = str(path), entry, field_name


@dataclass(frozen=True)
class ModelInfo:
    """One model the router may choose: cost per token, a quality score in [0, 1], context window.

    `litellm_params` are passed to litellm for this model (e.g. `api_base` of an OpenAI-compatible
    server); `capabilities` empty means "any capability".
    """

    name: str
    input_cost_per_token: float
    output_cost_per_token: float
    quality: float
    context_window: int = 8192
    capabilities: frozenset[str] = frozenset()
    litellm_params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def can(self, capability: str) -> bool:
        return not self.capabilities or capability in self.capabilities

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return tokens_in * self.input_cost_per_token + tokens_out * self.output_cost_per_token


# The offline simulator's models: cheap/fast, middle, and expensive/good, like a real provider's tiers.
SIMULATOR_MODELS: tuple[ModelInfo, ...] = (
    ModelInfo("simulator/fast-1", 1e-7, 4e-7, quality=0.55, context_window=16384),
    ModelInfo("simulator/balanced-1", 5e-7, 1.5e-6, quality=0.75, context_window=32768),
    ModelInfo("simulator/quality-1", 3e-6, 1.2e-5, quality=0.92, context_window=131072),
)

_NUMBERS = {"input_cost_per_token": float, "output_cost_per_token": float, "quality": float, "context_window": int}


def _model(path: Path | str, n: int, raw: Any) -> ModelInfo:
    entry = f"models[{n}]"
    if not isinstance(raw, dict):
        raise ConfigError(path, entry, "*", "must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or "/" not in name:
        raise ConfigError(path, entry, "name", "must be a string like 'provider/model'")
    entry = f"model {name!r}"
    values: dict[str, Any] = {}
    for key, kind in _NUMBERS.items():
        value = raw.get(key)
        if key == "context_window" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(path, entry, key, f"must be a non-negative number, got {value!r}")
        values[key] = kind(value)
    if not 0.0 <= values["quality"] <= 1.0:
        raise ConfigError(path, entry, "quality", "must be between 0 and 1")
    caps = raw.get("capabilities", [])
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise ConfigError(path, entry, "capabilities", "must be a list of strings")
    params = raw.get("litellm_params", {})
    if not isinstance(params, dict):
        raise ConfigError(path, entry, "litellm_params", "must be a table")
    unknown = set(raw) - {"name", "capabilities", "litellm_params", *_NUMBERS}
    if unknown:
        raise ConfigError(path, entry, sorted(unknown)[0], "unknown field")
    return ModelInfo(name=name, capabilities=frozenset(caps), litellm_params=dict(params), **values)


def read_entries(path: Path | str, key: str) -> list[Any]:
    """The `[[key]]` array of tables of a TOML file; a missing, unreadable or empty one is a ConfigError."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, "file", "*", str(exc)) from exc
    entries = data.get(key)
    if not isinstance(entries, list) or not entries:
        raise ConfigError(path, "file", key, f"needs at least one [[{key}]] entry")
    return entries


def load_models(path: Path | str) -> tuple[ModelInfo, ...]:
    """Read a `[[models]]` TOML table; any mistake raises ConfigError naming file, model and field."""
    entries = read_entries(path, "models")
    models = tuple(_model(path, n, raw) for n, raw in enumerate(entries))
    names = [m.name for m in models]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(path, f"model {dup!r}", "name", "appears twice")
    return models


def register_models(models: Iterable[ModelInfo] = SIMULATOR_MODELS) -> None:
    """Teach litellm the prices of models it does not know, so `cost_per_token` covers them."""
    import litellm  # here, not at the top: the MCP tool servers read this module's ConfigError, and litellm
    # takes ~4 s of CPU to import

    litellm.register_model(
        {
            m.name: {
                "input_cost_per_token": m.input_cost_per_token,
                "output_cost_per_token": m.output_cost_per_token,
                "litellm_provider": m.name.split("/", 1)[0],
                "mode": "chat",
                "max_tokens": m.context_window,
                "max_input_tokens": m.context_window,
                # Set explicitly so litellm has nothing to warn about for these models.
                "cache_creation_input_token_cost": 0.0,
                "cache_read_input_token_cost": 0.0,
            }
            for m in models
        }
    )
