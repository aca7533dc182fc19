"""Alerts: folded, published to agent.alerts, logged, and POSTed to a webhook when one is set.

Folding: the first alert of a kind and tenant opens a fold; what comes for the same kind and tenant
within `fold_s` of it is added to it (count, last_seen, the latest details), and the fold is
published once when its window ends. A burst is one alert with a count, never a flood; a burst that
lasts is one alert per window. `flush(force=True)` publishes the open folds (at shutdown).

The webhook is best effort and never holds the stream up: alerts wait in a bounded queue, a sender
task POSTs each as JSON and retries with exponential backoff; when the queue is full the oldest
waiting alert is dropped (and counted) rather than the stream blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from agents.clock import now_ms
from agents.redaction import redact, redact_values
from schemas.events import Record
from streams.logs import get_logger

__all__ = ["SEVERITIES", "AlertFolder", "Alerts", "Webhook", "alert_key"]

log = get_logger(__name__)

SEVERITIES = ("info", "warning", "critical")


def alert_key(kind: str, tenant: str) -> bytes:
    return f"{kind}|{tenant}".encode()


_LIST_MAX = 20


@dataclass
class _Fold:
    alert: Record
    closes_at: int
    lists: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class AlertFolder:
    """Open folds by (kind, tenant); `due(now)` takes those whose window has ended."""

    fold_ms: int
    _open: dict[tuple[str, str], _Fold] = field(default_factory=dict)

    def note(self, kind: str, severity: str, tenant: str, summary: str, details: dict[str, str],
             count: int = 1, now: int | None = None, lists: dict[str, list[str]] | None = None,
             fold: bool = True) -> None:
        """One occurrence (or `count`). `details` replace the fold's; `lists` are added to its lists
        (distinct items, the first `_LIST_MAX` kept, then `+N more`). `fold=False`: published at once."""
        at = now if now is not None else now_ms()
        opened = self._open.get((kind, tenant))
        if opened is None:
            alert = {"alert_id": f"{kind}|{tenant}|{at}", "kind": kind, "severity": severity, "tenant": tenant,
                     "summary": summary, "details": dict(details), "first_seen": at, "last_seen": at, "count": count}
            opened = self._open[(kind, tenant)] = _Fold(alert, at + (self.fold_ms if fold else 0))
        else:
            alert = opened.alert
            alert["count"] += count
            alert["last_seen"] = max(alert["last_seen"], at)
            alert["summary"] = summary
            alert["details"] = {**alert["details"], **details}
        for name, items in (lists or {}).items():
            kept = opened.lists.setdefault(name, [])
            kept.extend(i for i in items if i not in kept)
            shown = kept[:_LIST_MAX]
            more = f" (+{len(kept) - _LIST_MAX} more)" if len(kept) > _LIST_MAX else ""
            alert["details"][name] = ", ".join(shown) + more
        if SEVERITIES.index(severity) > SEVERITIES.index(alert["severity"]):
            alert["severity"] = severity

    def requeue(self, alerts: list[Record]) -> None:
        """Alerts taken by `due` but not published: due again at once, merged into a fold opened since."""
        for alert in alerts:
            key = (alert["kind"], alert["tenant"])
            opened = self._open.get(key)
            if opened is None:
                self._open[key] = _Fold(alert, 0)
                continue
            later = opened.alert
            opened.alert = {**later, "alert_id": alert["alert_id"], "first_seen": alert["first_seen"],
                            "count": alert["count"] + later["count"], "details": {**alert["details"],
                                                                                   **later["details"]}}
            opened.closes_at = 0

    def due(self, now: int | None = None, force: bool = False) -> list[Record]:
        at = now if now is not None else now_ms()
        done = [k for k, f in self._open.items() if force or f.closes_at <= at]
        return [self._open.pop(k).alert for k in done]


class Webhook:
    """POSTs alerts as JSON to `url` from a queue, retried with backoff; `offer` never waits."""

    def __init__(self, url: str, retries: int = 5, queue_size: int = 1000, first_delay_s: float = 0.5,
                 timeout_s: float = 5.0) -> None:
        self.url, self.retries, self.first_delay_s, self.timeout_s = url, retries, first_delay_s, timeout_s
        self.queue: asyncio.Queue[Record] = asyncio.Queue(queue_size)
        self.sent = self.failed = self.dropped = 0

    def offer(self, alert: Record) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
                self.dropped += 1
                log.warning("alert webhook queue full: oldest alert dropped", stage="alerts")
        self.queue.put_nowait(alert)

    async def run(self, stop: asyncio.Event, drain_s: float = 5.0) -> None:
        """POST what comes until `stop`; then what is left gets one try each, for `drain_s` at most."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as session:
            while not stop.is_set():
                try:
                    alert = await asyncio.wait_for(self.queue.get(), timeout=0.2)
                except TimeoutError:
                    continue
                await self._post(session, alert, stop)
            deadline = time.monotonic() + drain_s
            while not self.queue.empty() and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._post(session, self.queue.get_nowait(), stop),
                                           timeout=max(0.1, deadline - time.monotonic()))

    async def _post(self, session: aiohttp.ClientSession, alert: Record, stop: asyncio.Event) -> None:
        delay, error = self.first_delay_s, ""
        for attempt in range(self.retries + 1):
            try:
                async with session.post(self.url, json=alert) as response:
                    if response.status < 300:
                        self.sent += 1
                        return
                    error = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt == self.retries or stop.is_set():
                break
            log.warning("alert webhook failed; trying again", stage="alerts", attempt=attempt + 1,
                        error=redact(error)[:200])
            with contextlib.suppress(TimeoutError):  # a stop cuts the wait short
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 30.0)
        self.failed += 1
        log.error("alert webhook gave up", stage="alerts", alert_id=alert["alert_id"], error=redact(error)[:200])


class Alerts:
    """Where the detectors report: folds them, then publishes each (topic via `send`, log, webhook)."""

    def __init__(self, send: Callable[[Record], Awaitable[Any]], fold_s: float, webhook: Webhook | None = None) -> None:
        self.send, self.webhook = send, webhook
        self.folder = AlertFolder(int(fold_s * 1000))
        self.published: list[Record] = []  # the last ones, for tests and `risk` logs
        self.count = 0

    def raise_(self, kind: str, severity: str, tenant: str, summary: str, details: dict[str, str] | None = None,
               count: int = 1, now: int | None = None, lists: dict[str, list[str]] | None = None,
               fold: bool = True) -> None:
        """Report one occurrence (or `count`); it is published when its fold closes (`publish_due`)."""
        self.folder.note(kind, severity, tenant, redact(summary), redact_values(details or {}), count, now,
                         {k: [redact(i) for i in v] for k, v in (lists or {}).items()}, fold)

    async def publish_due(self, now: int | None = None, force: bool = False) -> list[Record]:
        """Publish the folds that closed; those the topic did not take (Kafka unavailable) stay for the
        next call, and are reported (not raised): an alert must not stop the stage."""
        alerts = self.folder.due(now, force)
        for n, alert in enumerate(alerts):
            try:
                await self.send(alert)
            except Exception as exc:
                log.warning("alert not published; trying again", stage="risk", kind=alert["kind"],
                            error=redact(str(exc))[:200])
                self.folder.requeue(alerts[n:])
                alerts = alerts[:n]
                break
            self.count += 1
            log.warning("risk alert", stage="risk", kind=alert["kind"], severity=alert["severity"],
                        tenant=alert["tenant"], summary=alert["summary"], count=alert["count"],
                        details=json.dumps(alert["details"], sort_keys=True))
            if self.webhook is not None:
                self.webhook.offer(alert)
        self.published = (self.published + alerts)[-100:]
        return alerts
