"""`agentstream dashboard`: a local web page that follows the running processes of an app.

Served by aiohttp on loopback. The page (dashboard.html, no build step, nothing fetched from the
network) draws its charts in SVG from JSON this server exposes:

- GET /api/figures: the figures of streams/observability/figures.py (from every process's /metrics),
  the consumer lag read here from Kafka (so it is right while workers are down), running experiments
  with their current estimate, and the latest results (their task ids link to their traces);
- GET /api/trace/{task_id}: the task's traces as waterfall rows, from the local span files.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from importlib import resources
from typing import Any

from aiohttp import web

from schemas import DecodeError, default_codec
from streams import kafka
from streams.client import end_offsets
from streams.logs import get_logger
from streams.observability import processes
from streams.observability.figures import Sampler
from streams.observability.lag import Lag, LagMonitor
from streams.observability.spanstore import traces_of_task
from streams.observability.waterfall import rows
from streams.settings import Settings
from streams.topics import ALL_TOPICS, RESULTS

__all__ = ["Dashboard", "experiments_now", "serve_dashboard"]

log = get_logger(__name__)

_RECENT = 25  # latest results shown


def experiments_now(settings: Settings) -> list[dict[str, Any]]:
    """Running experiments: per variant its outcomes, success rate and probability of being best, and what
    the decision rule says now. Empty when the prompt registry is off or unreachable."""
    if not settings.prompts_enabled:
        return []
    from agents.experiment_report import build_report
    from agents.prompt_registry import PromptRegistry

    registry = PromptRegistry(settings.postgres_dsn)
    try:
        out = []
        for exp in registry.experiments("running"):
            report = build_report(exp, registry.arm_stats(exp.name), [])
            out.append({"name": exp.name, "prompt": exp.prompt, "metric": exp.metric,
                        "variants": [{"variant": v, "n": a.n, "rate": a.rate, "p_best": report.best[v]}
                                     for v, a in report.arms],
                        "estimate": report.current.decision, "winner": report.current.winner,
                        "reason": report.current.reason})
        return out
    finally:
        registry.close()


class Dashboard:
    """The dashboard's state: the sampler, its own lag reading, the latest results and experiments."""

    def __init__(self, settings: Settings, interval_s: float = 2.0, app_only: bool = False) -> None:
        """Every worker and sink of the data folder (the demo's, the bench's, ...), or with `app_only` those
        of the settings' app id; the lag of every group named after the app id (or only this app's)."""
        self.settings, self.interval_s = settings, interval_s
        app = settings.app_id if app_only else None
        self.sampler = Sampler(lambda: processes.running(settings, app), lag=lambda: self._lag)
        self._lag: Lag | None = None
        discover = (f"{settings.app_id}-", {settings.topic(t) for t in ALL_TOPICS}) if app_only else \
            (settings.app_id, None)
        self.monitor = LagMonitor(settings.model_copy(update={"lag_interval_s": interval_s}), self._set_lag,
                                  discover=discover)
        self.recent: deque[dict[str, Any]] = deque(maxlen=_RECENT)
        self.experiments: list[dict[str, Any]] = []
        self.figures: dict[str, Any] = {}
        self._jobs: list[asyncio.Task[None]] = []

    def _set_lag(self, lag: Lag) -> None:
        self._lag = lag

    async def start(self) -> None:
        self.monitor.start()
        self._jobs = [asyncio.create_task(self._sample_every()), asyncio.create_task(self._follow_results()),
                      asyncio.create_task(self._experiments_every())]

    async def stop(self) -> None:
        for job in self._jobs:
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        await asyncio.to_thread(self.monitor.stop)

    async def _sample_every(self) -> None:
        while True:
            await asyncio.to_thread(self.sampler.sample)
            self.figures = {**self.sampler.figures(), "app_id": self.settings.app_id,
                            "recent": list(reversed(self.recent)), "experiments": self.experiments,
                            "interval_s": self.interval_s}
            await asyncio.sleep(self.interval_s)

    async def _experiments_every(self) -> None:
        while True:
            try:
                self.experiments = await asyncio.to_thread(experiments_now, self.settings)
            except Exception as exc:  # PostgreSQL away: the rest of the page goes on
                log.warning("experiments not read", stage="dashboard", error=str(exc)[:200])
            await asyncio.sleep(max(5.0, self.interval_s))

    async def _follow_results(self) -> None:
        """The latest results: from a few before the end of each partition, then as they come."""
        codec = default_codec()
        while True:
            consumer = kafka.consumer(self.settings)
            try:
                await consumer.start()
                ends = await end_offsets(self.settings, consumer, self.settings.topic(RESULTS))
                if not ends:
                    await asyncio.sleep(self.interval_s)
                    continue
                consumer.assign(list(ends))
                for tp, end in ends.items():
                    consumer.seek(tp, max(0, end - _RECENT))
                while True:
                    for messages in (await consumer.getmany(timeout_ms=1000, max_records=500)).values():
                        for m in messages:
                            self._add_result(codec, m)
            except Exception as exc:  # Kafka away: read again from the end a little later
                log.warning("results not read", stage="dashboard", error=str(exc)[:200])
                await asyncio.sleep(self.interval_s)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    def _add_result(self, codec: Any, message: Any) -> None:
        try:
            r = codec.decode_as("TaskResult", message.value)
        except DecodeError:
            return
        self.recent.append({"task_id": r["task_id"], "status": r["status"], "tenant": r["tenant"],
                            "pattern": (r.get("metadata") or {}).get("pattern", ""), "model": r["model"],
                            "cost_usd": r["cost_usd"], "latency_ms": r["latency_ms"], "at": message.timestamp / 1000})

    # -- HTTP ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/api/figures", self._figures)
        app.router.add_get("/api/trace/{task_id}", self._trace)
        return app

    async def _page(self, _request: web.Request) -> web.Response:
        page = resources.files("streams.observability").joinpath("dashboard.html").read_text()
        return web.Response(text=page, content_type="text/html")

    async def _figures(self, _request: web.Request) -> web.Response:
        return web.json_response(self.figures or {"at": time.time(), "app_id": self.settings.app_id,
                                                  "starting": True})

    async def _trace(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        found = await asyncio.to_thread(traces_of_task, self.settings.data_dir.expanduser().resolve(), task_id)
        return web.json_response({"task_id": task_id, "traces": [
            {"trace_id": trace_id, "rows": [r.as_dict() for r in rows(spans)]} for trace_id, spans in found.items()]})


async def serve_dashboard(settings: Settings, port: int, stop: asyncio.Event, interval_s: float = 2.0,
                          on_ready: Any = None, app_only: bool = False) -> None:
    """Serve on 127.0.0.1:`port` (0: a free port) until `stop` is set; `on_ready(url)` once listening."""
    dashboard = Dashboard(settings, interval_s, app_only)
    await dashboard.start()
    runner = web.AppRunner(dashboard.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    try:
        await site.start()
        bound = runner.addresses[0][1]
        if on_ready is not None:
            on_ready(f"http://127.0.0.1:{bound}/")
        await stop.wait()
    finally:
        await runner.cleanup()
        await dashboard.stop()
