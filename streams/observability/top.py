"""`agentstream top`: the dashboard's figures in the terminal (rich), refreshed live, for a machine
without a browser. `render(figures)` is the whole view; `run_top` refreshes it until Ctrl-C."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from streams.observability import processes
from streams.observability.figures import Sampler
from streams.settings import Settings

__all__ = ["render", "run_top"]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render(f: dict[str, Any]) -> Group:
    """Every figure of `Sampler.figures()` as rich tables."""
    dead = sum(f["deadletters"].values())
    head = Text.assemble(
        ("agentstream top", "bold"), f"  {time.strftime('%H:%M:%S', time.localtime(f['at']))}  ",
        f"results {f['tasks']['total']:,.0f}  tasks/s {f['tasks']['per_s']:,.1f}  "
        f"in flight {f['llm']['in_flight']:,.0f}  "
        f"cost ${f['cost']['total_usd']:,.6f}  lag {f['lag_total']:,}  dead letters {dead:,.0f}")
    status = Table(title="results", expand=True)
    status.add_column("status")
    status.add_column("count", justify="right")
    for name, count in sorted(f["tasks"]["by_status"].items()):
        status.add_row(name, f"{count:,.0f}")
    for pattern, count in sorted(f["tasks"]["by_pattern"].items()):
        status.add_row(f"pattern {pattern}", f"{count:,.0f}")
    stages = Table(title="stages (ms)", expand=True)
    for column in ("stage", "count", "p50", "p95"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for s in f["stages"]:
        stages.add_row(s["stage"], f"{s['count']:,.0f}", _ms(s["p50_ms"]), _ms(s["p95_ms"]))
    lag = Table(title="consumer lag", expand=True)
    for column in ("group", "topic", "partition", "lag"):
        lag.add_column(column, justify="right" if column in ("partition", "lag") else "left")
    for row in f["lag"]:
        lag.add_row(row["group"], row["topic"], str(row["partition"]), f"{row['lag']:,}")
    cost = Table(title="cost (USD)", expand=True)
    for column in ("tenant", "model", "per min", "total"):
        cost.add_column(column, justify="right" if column in ("per min", "total") else "left")
    for row in f["cost"]["rows"]:
        cost.add_row(row["tenant"], row["model"], f"{row['per_min_usd']:.6f}", f"{row['total_usd']:.6f}")
    other = Table(title="LLM calls, dead letters, alerts", expand=True)
    other.add_column("what")
    other.add_column("count", justify="right")
    for name, count in f["llm"]["calls"].items():
        other.add_row(f"llm {name}", f"{count:,.0f}")
    for stage, count in f["deadletters"].items():
        other.add_row(f"dead letters {stage}", f"{count:,.0f}")
    for alert in f["alerts"][:8]:
        other.add_row(Text(alert["text"], style="red" if alert["level"] == "error" else "yellow"), "")
    procs = Table(title="processes", expand=True)
    for column in ("role", "pid", "metrics", "state"):
        procs.add_column(column)
    for p in f["processes"]:
        procs.add_row(p["role"], str(p["pid"]), p["metrics_url"], "up" if p["up"] else Text("not answering", "red"))
    return Group(head, status, stages, lag, cost, other, procs)


def run_top(settings: Settings, interval_s: float = 2.0, console: Console | None = None,
            iterations: int | None = None, app_only: bool = False) -> None:
    """Refresh every `interval_s` until Ctrl-C (or `iterations` times): every process of the data folder,
    or with `app_only` those of the settings' app id."""
    sampler = Sampler(lambda: processes.running(settings, settings.app_id if app_only else None))
    sampler.sample()
    with Live(render(sampler.figures()), console=console, refresh_per_second=4, screen=False) as live:
        done = 0
        while iterations is None or done < iterations:
            time.sleep(interval_s)
            sampler.sample()
            live.update(render(sampler.figures()))
            done += 1
