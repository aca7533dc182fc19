"""`agentstream demo` and `agentstream bench`: the first run of a new user, and the measurements."""

from __future__ import annotations

import sys

import click

from streams.settings import Settings

__all__ = ["bench", "demo"]

BENCH_SECTIONS = ("pipeline", "observability", "memory", "agents", "outcomes", "tools")  # what `bench --only` can pick


@click.command()
@click.option("--tasks", "count", type=int, default=20, show_default=True, help="How many sample tasks.")
@click.option("--timeout", type=float, default=180.0, show_default=True, help="Seconds to wait for results.")
@click.pass_obj
def demo(settings: Settings, count: int, timeout: float) -> None:
    """Start the stack and a worker, run sample tasks, and print what happened."""
    from streams.demo.run import run_demo

    sys.exit(run_demo(settings, count, timeout))


@click.command()
@click.option("--events", type=int, default=50_000, show_default=True, help="Events for the raw aiokafka baseline.")
@click.option("--tasks", type=int, default=3_000, show_default=True, help="Tasks through the pipeline.")
@click.option("--agent-calls", type=int, default=3_000, show_default=True,
              help="Calls for the agent figure (a), litellm's own call rate.")
@click.option("--agent-tasks", type=int, default=8_000, show_default=True,
              help="Tasks per worker for the agent figures (b) and (d), at 2 s model latency.")
@click.option("--only", "sections", multiple=True, type=click.Choice(BENCH_SECTIONS),
              help="Run only this section (repeatable); default: all. The raw baseline always runs.")
@click.option("--two-workers/--no-two-workers", default=True, show_default=True,
              help="Agent figure (d): two workers in one consumer group.")
@click.pass_obj
def bench(settings: Settings, events: int, tasks: int, agent_calls: int, agent_tasks: int,
          sections: tuple[str, ...], two_workers: bool) -> None:
    """Measure the raw aiokafka baseline and the pipeline end to end on the running stack, what metrics
    and traces cost (the pipeline with observability on and off), then the memory tiers and the agent
    swarms (litellm's call rate, one worker at 2 s latency, the latency the pipeline adds, two workers), and
    the overhead of a tool call through MCP over stdio.
    Prints ratios against the raw baseline of the same run."""
    from streams.bench.pipeline import run_bench

    run_bench(settings, events, tasks, agent_calls, agent_tasks, set(sections or BENCH_SECTIONS), two_workers)


