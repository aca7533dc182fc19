"""`agentstream bench`, observability part: what the metrics and traces cost per task.

The pipeline figure (one worker, instant simulator, tasks/s end to end) measured with observability on
(AGENTSTREAM_OBSERVABILITY=true: /metrics, spans of every stage kept in the local span file, trace
headers on every record) and off, alternately, in the same run on the same broker. Beside tasks/s, the
worker's own CPU time per task (all its threads: the span exporter's and the lag reader's too), which
a busy machine disturbs far less than the rate. The instant model makes this the worst case: with a
real model's latency the same cost is a far smaller share.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import click

from streams.bench.pipeline import pipeline_run
from streams.settings import Settings

__all__ = ["ObservabilityCost", "Round", "observability_cost"]


@dataclass(frozen=True)
class Round:
    rate: float  # tasks/s end to end
    cpu_ms: float  # the worker's CPU time per task


@dataclass(frozen=True)
class ObservabilityCost:
    on: list[Round]
    off: list[Round]

    def median(self, which: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in getattr(self, which))

    @property
    def rate_share(self) -> float:
        """The throughput observability costs, as a share of the rate without it: the median over the rounds
        of each round's pair (run one after the other, so they share the machine's state best)."""
        return statistics.median(1 - on.rate / off.rate for on, off in zip(self.on, self.off, strict=True) if off.rate)

    @property
    def cpu_share(self) -> float:
        """The worker CPU per task observability adds, as a share of the CPU per task without it (median of
        the rounds' pairs)."""
        return statistics.median(on.cpu_ms / off.cpu_ms - 1 for on, off in zip(self.on, self.off, strict=True)
                                 if off.cpu_ms)


def _round(settings: Settings, count: int, on: bool) -> Round:
    load, _ = pipeline_run(settings, count, observability=on)  # the worker's CPU counted after its warm-up task
    return Round(load.rate, load.cpu_ms_per_task)


def observability_cost(settings: Settings, tasks: int, rounds: int = 2) -> ObservabilityCost:
    """`rounds` of (on, off), the order swapped every round so a drift of the machine favours neither."""
    on: list[Round] = []
    off: list[Round] = []
    for n in range(rounds):
        for flag in ((True, False) if n % 2 == 0 else (False, True)):
            (on if flag else off).append(_round(settings, tasks, flag))
    cost = ObservabilityCost(on, off)
    for label, runs in (("on ", on), ("off", off)):
        click.echo(f"observability {label}               : {statistics.median(r.rate for r in runs):>10,.0f} tasks/s   "
                   f"worker CPU {statistics.median(r.cpu_ms for r in runs):.2f} ms/task  (rounds: "
                   f"{', '.join(f'{r.rate:,.0f}/s {r.cpu_ms:.2f} ms' for r in runs)})")
    click.echo(f"observability cost              : {cost.rate_share:>10.1%} of throughput, "
               f"{cost.cpu_share:+.1%} worker CPU per task (medians of the rounds' pairs; 1 worker, instant "
               f"simulator: the worst case)")
    return cost
