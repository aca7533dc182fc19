"""The figures the dashboard and `agentstream top` show, computed from the processes' /metrics.

A `Sampler` scrapes every running process of an app (streams/observability/processes.py) every few
seconds and keeps the last scrapes; counters are summed over processes (a restarted process's counter
starting again at 0 is taken as a reset, as Prometheus does), rates come from the difference between
scrapes, latency quantiles from the histogram buckets (as PromQL's histogram_quantile), and lag is
the largest any process reports for a partition (each reports its whole group) or the sampler's own
reading. `figures()` returns plain JSON-ready data.
"""

from __future__ import annotations

import itertools
import math
import time
import urllib.request
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streams.observability.processes import ProcessEntry

__all__ = ["Alert", "Sampler", "Scrape", "parse", "quantile", "scrape"]

Labels = tuple[tuple[str, str], ...]
Series = dict[tuple[str, Labels], float]  # (sample name, sorted labels) -> value

RATE_WINDOW_S = 10.0  # tasks/s over the last 10 s
MINUTE_S = 60.0  # cost per minute, quantiles, alerts over the last minute
LAG_ALERT = 1000  # records behind, per group


def parse(text: str) -> Series:
    """Every sample of a Prometheus text exposition."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@dataclass(frozen=True)
class Scrape:
    """One reading of every process: when, which processes, and each live one's samples by pid."""

    at: float
    processes: list[ProcessEntry]
    series: dict[int, Series]

    def up(self, entry: ProcessEntry) -> bool:
        return entry.pid in self.series


def _fetch(url: str, timeout_s: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 (a local process's own URL)
        return answer.read().decode()


def scrape(entries: list[ProcessEntry], timeout_s: float = 2.0,
           fetch: Callable[[str, float], str] = _fetch) -> Scrape:
    """Read every process's /metrics at once; a process that does not answer has no series."""
    series: dict[int, Series] = {}

    def one(entry: ProcessEntry) -> None:
        try:
            series[entry.pid] = parse(fetch(entry.metrics_url, timeout_s))
        except (OSError, ValueError):
            pass

    with ThreadPoolExecutor(max(1, min(8, len(entries)))) as pool:
        list(pool.map(one, entries))
    return Scrape(time.time(), entries, series)


def _match(labels: Labels, want: dict[str, str]) -> bool:
    have = dict(labels)
    return all(have.get(k) == v for k, v in want.items())


def _grouped(series: Series, name: str, by: tuple[str, ...],
             want: dict[str, str] | None = None) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (sample, labels), value in series.items():
        if sample == name and (not want or _match(labels, want)):
            have = dict(labels)
            out[tuple(have.get(k, "") for k in by)] += value
    return out


def totals(scrape_: Scrape, name: str, by: tuple[str, ...] = (), want: dict[str, str] | None = None,
           ) -> dict[tuple[str, ...], float]:
    """A counter (or gauge) summed over processes, grouped by the labels `by`."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for series in scrape_.series.values():
        for key, value in _grouped(series, name, by, want).items():
            out[key] += value
    return dict(out)


def increase(old: Scrape, new: Scrape, name: str, by: tuple[str, ...] = (),
             want: dict[str, str] | None = None) -> dict[tuple[str, ...], float]:
    """How much a counter grew from `old` to `new`, summed over processes; a process that restarted
    (its counter went down) or started since counts from 0."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for pid, series in new.series.items():
        before = _grouped(old.series[pid], name, by, want) if pid in old.series else {}
        for key, value in _grouped(series, name, by, want).items():
            was = before.get(key, 0.0)
            out[key] += value - was if value >= was else value
    return dict(out)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram {upper bound: count}, interpolated within its bucket
    (PromQL's histogram_quantile); None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # in the open bucket: its lower bound is all we know
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


def _buckets(by_stage: dict[tuple[str, ...], float]) -> dict[str, dict[float, float]]:
    out: dict[str, dict[float, float]] = defaultdict(dict)
    for (stage, le), count in by_stage.items():
        out[stage][float(le)] = count
    return out


@dataclass
class Alert:
    key: str
    level: str
    text: str
    first_at: float
    last_at: float

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "text": self.text, "first_at": self.first_at, "last_at": self.last_at}


@dataclass
class Sampler:
    """Scrapes the processes `entries()` returns and turns the last scrapes into figures."""

    entries: Callable[[], list[ProcessEntry]]
    lag: Callable[[], dict[tuple[str, str, int], int] | None] = lambda: None
    keep_s: float = 600.0
    history: deque[Scrape] = field(default_factory=deque)
    alerts: dict[str, Alert] = field(default_factory=dict)

    def sample(self) -> Scrape:
        now = scrape(self.entries())
        self.history.append(now)
        while self.history and self.history[0].at < now.at - self.keep_s:
            self.history.popleft()
        return now

    def _ago(self, seconds: float) -> Scrape | None:
        """The oldest scrape within `seconds` of the last one (other than the last), if any."""
        last = self.history[-1]
        for s in self.history:
            if s is not last and s.at >= last.at - seconds:
                return s
        return None

    def figures(self) -> dict[str, Any]:
        """Everything the dashboard and `top` show, from the scrapes so far (call `sample` first)."""
        if not self.history:
            self.sample()
        now = self.history[-1]
        recent, minute = self._ago(RATE_WINDOW_S), self._ago(MINUTE_S)
        tasks = totals(now, "agentstream_tasks_total", ("status", "pattern"))
        figures: dict[str, Any] = {
            "at": now.at,
            "processes": [{"role": e.role, "pid": e.pid, "app_id": e.app_id, "metrics_url": e.metrics_url,
                           "up": now.up(e)} for e in now.processes],
            "tasks": self._tasks(tasks, now, recent),
            "results_series": self._series(),
            "stages": self._stages(now, minute),
            "lag": self._lag(now),
            "llm": {"in_flight": sum(totals(now, "agentstream_llm_calls_in_flight").values()),
                    "calls": _flat(totals(now, "agentstream_llm_calls_total", ("model", "outcome"))),
                    "tokens": _flat(totals(now, "agentstream_llm_tokens_total", ("direction",)))},
            "cost": self._cost(now, minute),
            "deadletters": _flat(totals(now, "agentstream_deadletters_total", ("stage",))),
            "budget": [{"tenant": t, "event": e, "count": v}
                       for (t, e), v in sorted(totals(now, "agentstream_budget_events_total",
                                                      ("tenant", "event")).items())],
            "memory": _flat(totals(now, "agentstream_memory_lookups_total", ("tier", "result"))),
            "sinks": _flat(totals(now, "agentstream_sink_records_total", ("tier", "result"))),
            "experiment_decisions": _flat(totals(now, "agentstream_experiment_decisions_total", ("decision",))),
        }
        figures["lag_total"] = sum(row["lag"] for row in figures["lag"])
        figures["alerts"] = self._alerts(now, minute, figures)
        return figures

    @staticmethod
    def _tasks(tasks: dict[tuple[str, ...], float], now: Scrape, recent: Scrape | None) -> dict[str, Any]:
        by_status: dict[str, float] = defaultdict(float)
        by_pattern: dict[str, float] = defaultdict(float)
        for (status, pattern), v in tasks.items():
            by_status[status] += v
            by_pattern[pattern] += v
        per_s = 0.0
        if recent is not None and now.at > recent.at:
            per_s = sum(increase(recent, now, "agentstream_tasks_total").values()) / (now.at - recent.at)
        return {"total": sum(tasks.values()), "by_status": dict(by_status), "by_pattern": dict(by_pattern),
                "per_s": per_s}

    def _series(self) -> list[dict[str, Any]]:
        """Results per second by status between consecutive scrapes (the chart's points)."""
        points = []
        scrapes = list(self.history)
        for old, new in itertools.pairwise(scrapes):
            if new.at <= old.at:
                continue
            grew = increase(old, new, "agentstream_tasks_total", ("status",))
            cost = sum(increase(old, new, "agentstream_llm_cost_usd_total").values())
            points.append({"at": new.at, "per_s": {s: v / (new.at - old.at) for (s,), v in grew.items()},
                           "cost_per_min": cost / (new.at - old.at) * 60.0})
        return points

    @staticmethod
    def _stages(now: Scrape, minute: Scrape | None) -> list[dict[str, Any]]:
        """p50/p95 per stage over the last minute, or since the processes started when the minute had none."""
        whole = _buckets(totals(now, "agentstream_stage_seconds_bucket", ("stage", "le")))
        last = _buckets(increase(minute, now, "agentstream_stage_seconds_bucket", ("stage", "le"))) if minute else {}
        rows = []
        for stage in sorted(whole):
            buckets, window = last.get(stage, {}), "1m"
            if not buckets or max(buckets.values()) <= 0:
                buckets, window = whole[stage], "all"
            p50, p95 = quantile(0.5, buckets), quantile(0.95, buckets)
            rows.append({"stage": stage, "count": max(whole[stage].values()), "window": window,
                         "p50_ms": None if p50 is None else p50 * 1000, "p95_ms": None if p95 is None else p95 * 1000})
        return rows

    def _lag(self, now: Scrape) -> list[dict[str, Any]]:
        own = self.lag()
        if own is None:  # the processes' own readings: each reports its whole group, so take the largest
            own = {}
            for series in now.series.values():
                for (g, t, p), v in _grouped(series, "kafka_consumergroup_lag", ("consumergroup", "topic",
                                                                                  "partition")).items():
                    key = (g, t, int(p))
                    own[key] = max(own.get(key, 0), int(v))
        return [{"group": g, "topic": t, "partition": p, "lag": v} for (g, t, p), v in sorted(own.items())]

    @staticmethod
    def _cost(now: Scrape, minute: Scrape | None) -> dict[str, Any]:
        total = totals(now, "agentstream_llm_cost_usd_total", ("tenant", "model"))
        grew = increase(minute, now, "agentstream_llm_cost_usd_total", ("tenant", "model")) if minute else {}
        span = max(1e-9, now.at - minute.at) if minute else 0.0
        rows = [{"tenant": t, "model": m, "total_usd": v,
                 "per_min_usd": grew.get((t, m), 0.0) / span * 60.0 if span else 0.0}
                for (t, m), v in sorted(total.items())]
        return {"total_usd": sum(total.values()), "rows": rows}

    def _alerts(self, now: Scrape, minute: Scrape | None, figures: dict[str, Any]) -> list[dict[str, Any]]:
        """Raised from what changed over the last minute; each is kept (with when it was first and last
        seen) for ten minutes after it stopped."""
        raised: list[tuple[str, str, str]] = []
        for p in figures["processes"]:
            if not p["up"]:
                raised.append((f"down:{p['pid']}", "error",
                               f"{p['role']} (pid {p['pid']}) does not answer at {p['metrics_url']}"))
        if minute is not None:
            for (stage,), n in increase(minute, now, "agentstream_deadletters_total", ("stage",)).items():
                if n > 0:
                    raised.append((f"dead:{stage}", "warning",
                                   f"{n:g} dead letter(s) at stage {stage} in the last minute"))
            for (tenant, event), n in increase(minute, now, "agentstream_budget_events_total",
                                               ("tenant", "event")).items():
                if n > 0 and event == "exceeded":
                    raised.append((f"budget:{tenant}", "warning",
                                   f"tenant {tenant}: {n:g} step(s) ended over budget in the last minute"))
            for (model, outcome), n in increase(minute, now, "agentstream_llm_calls_total",
                                                ("model", "outcome")).items():
                if n > 0 and outcome != "ok":
                    raised.append((f"llm:{model}:{outcome}", "warning",
                                   f"model {model}: {n:g} call(s) failed ({outcome}) in the last minute"))
        behind: dict[str, int] = defaultdict(int)
        for row in figures["lag"]:
            behind[row["group"]] += row["lag"]
        for group, lag in behind.items():
            if lag >= LAG_ALERT:
                raised.append((f"lag:{group}", "warning", f"consumer group {group} is {lag:,} records behind"))
        for key, level, text in raised:
            alert = self.alerts.get(key)
            if alert is None:
                self.alerts[key] = Alert(key, level, text, now.at, now.at)
            else:
                alert.text, alert.last_at = text, now.at
        for key in [k for k, a in self.alerts.items() if a.last_at < now.at - 600]:
            del self.alerts[key]
        return [a.as_dict() for a in sorted(self.alerts.values(), key=lambda a: a.last_at, reverse=True)]


def _flat(grouped: dict[tuple[str, ...], float]) -> dict[str, float]:
    """{("a", "b"): v} -> {"a/b": v}, for JSON."""
    return {"/".join(k): v for k, v in sorted(grouped.items())}
