"""The risk detectors, as plain state machines fed with events and a clock (milliseconds): no Kafka here.

- CostSpikes: spend per tenant and overall in a sliding window against the same scope's trailing
  baseline; a spike is spend above k x baseline and above a floor; released after a calm period.
- exposures: the redaction hits of a task's fields (agents/redaction.py `findings`), by field and kind.
- Conflicts: two results for one task id with different content.
- Burst: more than N events in a sliding window (dead letters).
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

from agents.redaction import findings
from schemas.events import Record

__all__ = ["GLOBAL", "Burst", "Conflict", "Conflicts", "CostSpikes", "SpikeChange", "exposures"]

GLOBAL = "*"
"""The scope of everything (all tenants), in alerts and spike changes."""


@dataclass(frozen=True)
class SpikeChange:
    """A scope (a tenant, or GLOBAL) starts spiking, keeps spiking past half its lite-mode expiry
    (`extend`), or is calm again (`release`); spends in USD per spike window."""

    scope: str
    change: str  # spike | extend | release
    current_usd: float
    baseline_usd: float


@dataclass
class _Spiking:
    since: int
    baseline_usd: float  # the baseline when it started: calm is measured against it
    renewed: int
    calm_since: int | None = None


@dataclass
class CostSpikes:
    """Spend windows per tenant; `evaluate(now)` says which scopes start or stop spiking."""

    window_ms: int
    baseline_ms: int
    factor: float
    floor_usd: float
    calm_ms: int
    lite_ms: int
    _spend: dict[str, deque[tuple[int, float]]] = field(default_factory=dict)
    _first_seen: dict[str, int] = field(default_factory=dict)
    spiking: dict[str, _Spiking] = field(default_factory=dict)

    def add(self, tenant: str, cost_usd: float, at: int) -> None:
        self._spend.setdefault(tenant, deque()).append((at, cost_usd))
        for scope in (tenant, GLOBAL):
            self._first_seen[scope] = min(self._first_seen.get(scope, at), at)

    def _sums(self, tenant: str, now: int) -> tuple[float, float]:
        """(spend in the window, baseline spend scaled to one window) of a tenant."""
        spend = self._spend.get(tenant, deque())
        start = now - self.window_ms - self.baseline_ms
        while spend and spend[0][0] < start:
            spend.popleft()
        current = base = 0.0
        for at, cost in spend:
            if at > now - self.window_ms:
                current += cost
            elif at <= now - self.window_ms:
                base += cost
        return current, base * self.window_ms / self.baseline_ms

    def evaluate(self, now: int) -> list[SpikeChange]:
        """Tenants first; the overall scope then counts only the tenants not spiking (a spike one
        tenant explains is that tenant's, and does not put everyone in lite mode)."""
        changes: list[SpikeChange] = []
        overall_current = overall_base = 0.0
        for tenant in list(self._spend):
            current, base = self._sums(tenant, now)
            changes += self._judge(tenant, current, base, now)
            if tenant not in self.spiking:
                overall_current += current
                overall_base += base
            if not self._spend[tenant] and tenant not in self.spiking:
                del self._spend[tenant]
        changes += self._judge(GLOBAL, overall_current, overall_base, now)
        return changes

    def _judge(self, scope: str, current: float, base: float, now: int) -> list[SpikeChange]:
        state = self.spiking.get(scope)
        if state is None:
            warmed = self._first_seen.get(scope, now) <= now - self.window_ms - self.baseline_ms
            if warmed and current > self.factor * base and current > self.floor_usd:
                self.spiking[scope] = _Spiking(now, base, now)
                return [SpikeChange(scope, "spike", current, base)]
            return []
        if current <= max(self.factor * state.baseline_usd, self.floor_usd):
            state.calm_since = state.calm_since if state.calm_since is not None else now
            if now - state.calm_since >= self.calm_ms:
                del self.spiking[scope]
                return [SpikeChange(scope, "release", current, state.baseline_usd)]
            return []
        state.calm_since = None
        if now - state.renewed >= self.lite_ms // 2:  # still spiking: its lite mode must not run out
            state.renewed = now
            return [SpikeChange(scope, "extend", current, state.baseline_usd)]
        return []


def exposures(task: Record) -> dict[str, Counter[str]]:
    """Field -> kinds of credential found in it (counts), for a TaskRequested's free-text fields."""
    found: dict[str, Counter[str]] = {}
    texts = {"description": str(task.get("description") or "")}
    texts |= {f"metadata.{k}": v for k, v in (task.get("metadata") or {}).items() if isinstance(v, str)}
    for name, text in texts.items():
        hits = findings(text)
        if hits:
            found[name] = hits
    return found


@dataclass(frozen=True)
class Conflict:
    task_id: str
    first: str  # where each result is: topic:partition@offset, and its model
    second: str


@dataclass
class Conflicts:
    """The content hash of each task's first result, kept `keep_ms`; a different second one is a conflict."""

    keep_ms: int
    _seen: OrderedDict[str, tuple[str, str, int]] = field(default_factory=OrderedDict)

    def add(self, result: Record, where: str, now: int) -> Conflict | None:
        self._forget(now)
        task_id = result["task_id"]
        digest = hashlib.sha256(f"{result['status']}\x00{result['output']}".encode()).hexdigest()
        here = f"{where} model={result.get('model', '')}"
        seen = self._seen.get(task_id)
        if seen is None:
            self._seen[task_id] = (digest, here, now)
            return None
        if seen[0] == digest:
            return None
        return Conflict(task_id, seen[1], here)

    def _forget(self, now: int) -> None:
        while self._seen:
            _, (_, _, at) = next(iter(self._seen.items()))
            if at > now - self.keep_ms:
                return
            self._seen.popitem(last=False)


@dataclass
class Burst:
    """How many events in the last `window_ms`."""

    window_ms: int
    _times: deque[int] = field(default_factory=deque)

    def add(self, at: int) -> int:
        self._times.append(at)
        while self._times and self._times[0] <= at - self.window_ms:
            self._times.popleft()
        return len(self._times)
