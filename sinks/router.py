"""The routing policy: which event types go to which memory tiers, read from a YAML file, not code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

__all__ = ["KNOWN_TIERS", "Router", "RoutingError"]

KNOWN_TIERS = frozenset({"redis", "vectors", "postgres"})


class RoutingError(ValueError):
    """The routing file names an unknown tier or is not shaped as `routes: {type: [tier, ...]}`."""


@dataclass(frozen=True)
class Router:
    """Event type -> the tiers it is written to."""

    routes: Mapping[str, tuple[str, ...]]
    default: tuple[str, ...] = field(default=())

    @classmethod
    def from_mapping(cls, data: object) -> Router:
        if not isinstance(data, dict) or not isinstance(data.get("routes", {}), dict):
            raise RoutingError("the routing file must be a mapping with a `routes` mapping")
        routes = {str(k): tuple(v or ()) for k, v in (data.get("routes") or {}).items()}
        default = tuple(data.get("default") or ())
        for name, tiers in [*routes.items(), ("default", default)]:
            unknown = set(tiers) - KNOWN_TIERS
            if unknown:
                raise RoutingError(f"{name}: unknown tier(s) {sorted(unknown)}; known: {sorted(KNOWN_TIERS)}")
        return cls(routes, default)

    @classmethod
    def load(cls, path: Path | None = None) -> Router:
        """The policy in `path`, or the packaged default (sinks/routing.yaml)."""
        text = path.read_text() if path else resources.files("sinks").joinpath("routing.yaml").read_text()
        return cls.from_mapping(yaml.safe_load(text))

    def tiers_for(self, event_type: str) -> tuple[str, ...]:
        return self.routes.get(event_type, self.default)

    @property
    def tiers(self) -> set[str]:
        """Every tier some event type is routed to (only these need to be set up)."""
        return {t for tiers in [*self.routes.values(), self.default] for t in tiers}
