"""`agentstream trace`, `dashboard` and `top`: see what the running processes do (docs/observability.md)."""

from __future__ import annotations

import json
import time

import click

from streams.settings import Settings

__all__ = ["dashboard", "top", "trace"]


@click.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="The spans as JSON lines instead of a waterfall.")
@click.pass_obj
def trace(settings: Settings, task_id: str, as_json: bool) -> None:
    """Print the trace of TASK_ID as a waterfall: every span, in every process (submit, worker, sinks),
    with its start offset, duration, model, tokens and cost. Read from the spans kept in the data folder."""
    from streams.observability.spanstore import traces_dir, traces_of_task
    from streams.observability.waterfall import render_text

    found = traces_of_task(settings.data_dir.expanduser().resolve(), task_id)
    if not found:
        raise click.ClickException(f"no span of task {task_id!r} in {traces_dir(settings.data_dir)} (spans are "
                                   "written about a second after they end; is AGENTSTREAM_OBSERVABILITY off?)")
    for trace_id, spans in found.items():
        if as_json:
            for span in spans:
                click.echo(json.dumps(span.as_dict(), default=str))
        else:
            click.echo(render_text(trace_id, spans))


@click.command()
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (AGENTSTREAM_DASHBOARD_PORT; 0: a free one).")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between readings.")
@click.option("--app-only", is_flag=True, help="Only the processes of AGENTSTREAM_APP_ID (default: every worker and "
              "sink of the data folder, the demo's and the bench's included).")
@click.pass_obj
def dashboard(settings: Settings, port: int | None, interval: float, app_only: bool) -> None:
    """Serve a live dashboard on 127.0.0.1 until Ctrl-C: tasks/s and results, latency per stage, consumer
    lag, LLM calls in flight, cost by tenant and model, dead letters, experiments, alerts, each task's trace."""
    from streams.lifecycle import run_until_signalled
    from streams.observability.dashboard import serve_dashboard

    def ready(url: str) -> None:
        which = f"app {settings.app_id}" if app_only else f"every process of {settings.data_dir}"
        click.echo(f"dashboard of {which}: {url}  (Ctrl-C stops it)", err=True)

    chosen = settings.dashboard_port if port is None else port
    try:
        run_until_signalled(lambda stop: serve_dashboard(settings, chosen, stop, interval, ready, app_only))
    except OSError as exc:
        raise click.ClickException(f"cannot serve on 127.0.0.1:{chosen}: {exc.strerror or exc}; "
                                   "pick another with --port or AGENTSTREAM_DASHBOARD_PORT") from exc


@click.command()
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between readings.")
@click.option("--once", is_flag=True, help="Print the figures once and exit (needs two readings: takes --interval).")
@click.option("--app-only", is_flag=True,
              help="Only the processes of AGENTSTREAM_APP_ID (default: all of the data folder).")
@click.pass_obj
def top(settings: Settings, interval: float, once: bool, app_only: bool) -> None:
    """The dashboard's figures in the terminal, refreshed live, until Ctrl-C."""
    from rich.console import Console

    from streams.observability import processes
    from streams.observability.figures import Sampler
    from streams.observability.top import render, run_top

    if once:
        sampler = Sampler(lambda: processes.running(settings, settings.app_id if app_only else None))
        sampler.sample()
        time.sleep(interval)
        sampler.sample()
        Console().print(render(sampler.figures()))
        return
    try:
        run_top(settings, interval, app_only=app_only)
    except KeyboardInterrupt:
        pass
