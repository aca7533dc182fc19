"""How the risk manager runs: inside `agentstream worker` (the control follower, and the risk stage
unless AGENTSTREAM_RISK_ENABLED=false) or alone (`agentstream risk`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agents.runner import TaskRunner
from schemas import Codec, default_codec
from streams import kafka
from streams.admin import ensure_topics
from streams.lifecycle import Loop, close, run_until_signalled, started
from streams.logs import get_logger
from streams.processors.guard import Guard, Send, topic_sender
from streams.risk.control import ControlFollower
from streams.risk.processor import RiskStage
from streams.settings import Settings
from streams.topics import DEADLETTERS

__all__ = ["publish_alert", "run_risk", "serve_risk", "worker_loops"]

log = get_logger(__name__)


def worker_loops(settings: Settings, runner: TaskRunner, codec: Codec, guard: Guard,
                 send: Callable[[str], Send]) -> list[Loop]:
    """A worker's share: it follows the control topic (the runner asks it whether lite mode is on),
    and runs the risk stage (one member of the group is active, the others stand by)."""
    follower = ControlFollower(settings, codec)
    runner.lite_mode = follower.state.lite_scope
    loops: list[Loop] = [follower.run]
    if settings.risk_enabled:
        loops.append(RiskStage(settings, codec, guard, send).run)
    return loops


async def serve_risk(settings: Settings, stop: asyncio.Event) -> None:
    """The risk stage alone until `stop` is set."""
    codec = default_codec()
    producer = await started(lambda: kafka.producer(settings), settings.startup_timeout_s, "risk-producer")

    def send(topic: str) -> Send:
        return topic_sender(producer, settings.topic(topic))

    try:
        await RiskStage(settings, codec, Guard(codec, send(DEADLETTERS)), send).run(stop)
    finally:
        await close(producer, "risk-producer")


def run_risk(settings: Settings) -> None:
    """`agentstream risk`: create the topics, then run the risk stage until SIGTERM/SIGINT. Blocks."""
    asyncio.run(ensure_topics(settings, timeout_s=settings.startup_timeout_s, wait_for_kafka=True))
    log.info("risk stage starting", stage="risk", app_id=settings.app_id, kafka=settings.kafka_servers)
    run_until_signalled(lambda stop: serve_risk(settings, stop))
    log.info("risk stage stopped", stage="risk")


async def publish_alert(settings: Settings, kind: str, severity: str, tenant: str, summary: str,
                        details: dict[str, str]) -> None:
    """One alert from a command (not the risk stage): to agent.alerts, the log and the webhook, at once."""
    from streams.risk.processor import alerts_from_settings
    from streams.topics import ALERTS, topic_specs

    await ensure_topics(settings, [s for s in topic_specs(settings) if s.name == settings.topic(ALERTS)])
    codec = default_codec()
    producer = kafka.producer(settings)
    await producer.start()
    try:
        alerts = alerts_from_settings(settings, codec, lambda topic: topic_sender(producer, settings.topic(topic)))
        alerts.raise_(kind, severity, tenant, summary, details, fold=False)
        await alerts.publish_due()
        if alerts.webhook is not None:  # delivered (or given up) before the command exits, within a bound
            stop = asyncio.Event()
            stop.set()
            await asyncio.wait_for(alerts.webhook.run(stop), timeout=30)
    finally:
        await producer.stop()
