"""The risk stage: an ordered consumer group (`<app id>-risk`) over agent.tasks, agent.results and
agent.deadletters, with a clock that evaluates the spend windows and publishes folded alerts.

Spend must be seen whole (per tenant and overall), so the group gives every partition to one member
(`OneMember`, the lowest member id): the other workers' risk stages stand by and take over on a
rebalance. What the detectors do is in streams/risk/detectors.py and docs/risk.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

from agents.clock import now_ms
from schemas import Codec, DecodeError
from schemas.events import Record, tenant_of
from streams.lifecycle import Loop, run_all
from streams.logs import get_logger
from streams.processors.guard import Guard, Incoming, Send
from streams.processors.ordered import OrderedConsumer
from streams.risk.alerts import Alerts, Webhook, alert_key
from streams.risk.control import command_key, lite_mode_command
from streams.risk.detectors import GLOBAL, Burst, Conflicts, CostSpikes, SpikeChange, exposures
from streams.settings import Settings
from streams.topics import ALERTS, CONTROL, DEADLETTERS, RESULTS, TASKS, tenant_task_topic

__all__ = ["OneMember", "RiskStage", "alerts_from_settings"]

log = get_logger(__name__)


class OneMember(AbstractPartitionAssignor):
    """Every partition to one member (the lowest id): a group with one active member and standbys."""

    name = "one-member"
    version = 0

    @classmethod
    def assign(cls, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
               ) -> dict[str, ConsumerProtocolMemberAssignment]:
        leader = min(members)
        topics = sorted({t for m in members.values() for t in m.subscription})
        owned = [(t, sorted(cluster.partitions_for_topic(t) or ())) for t in topics]
        return {member: ConsumerProtocolMemberAssignment(cls.version, owned if member == leader else [], b"")
                for member in members}

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass


def alerts_from_settings(settings: Settings, codec: Codec, send: Callable[[str], Send]) -> Alerts:
    """Alerts published to agent.alerts (and the webhook, when AGENTSTREAM_ALERT_WEBHOOK is set)."""
    to_topic = send(ALERTS)

    async def publish(alert: Record) -> None:
        await to_topic(alert_key(alert["kind"], alert["tenant"]), codec.encode("RiskAlert", alert))

    url = settings.alert_webhook_url
    webhook = Webhook(url.get_secret_value(), retries=settings.alert_webhook_retries) if url else None
    return Alerts(publish, settings.alert_fold_s, webhook)


class RiskStage:
    """The detectors fed by the group's records, and a clock for windows and folds."""

    def __init__(self, settings: Settings, codec: Codec, guard: Guard, send: Callable[[str], Send],
                 clock: Callable[[], int] = now_ms) -> None:
        s = self.settings = settings
        self.codec, self._now = codec, clock
        self.tasks, self.results, self.dead_letters = s.topic(TASKS), s.topic(RESULTS), s.topic(DEADLETTERS)
        self.alerts = alerts_from_settings(s, codec, send)
        self._control = send(CONTROL)
        self.spikes = CostSpikes(int(s.risk_spike_window_s * 1000), int(s.risk_baseline_window_s * 1000),
                                 s.risk_spike_factor, s.risk_spike_floor_usd, int(s.risk_calm_s * 1000),
                                 int(s.risk_lite_for_s * 1000))
        self.conflicts = Conflicts(int(s.risk_conflict_window_s * 1000))
        self.dead_burst = Burst(int(s.risk_deadletter_window_s * 1000))
        self._changes: list[SpikeChange] = []  # lite-mode changes not yet on the control topic
        self._watermark = 0  # the latest result's created_at: the spend windows' clock while records flow
        self._last_record = 0.0  # when (wall clock, ms) the last record was handled
        self._clock_ms = 0
        self.tenant_tasks = tenant_task_topic(s, "")  # a secured Kafka's tenant task topics start so
        pattern = None
        if s.tenant_topics:  # every tenant's own task topic too, those added later included
            shared = "|".join(re.escape(t) for t in (self.tasks, self.results, self.dead_letters))
            pattern = f"^({shared}|{re.escape(self.tenant_tasks)}[a-z0-9][a-z0-9._-]*)$"
        self.consumer = OrderedConsumer(s, "risk", [self.tasks, self.results, self.dead_letters], guard,
                                        self.handle, assignors=(OneMember,), pattern=pattern)

    async def run(self, stop: asyncio.Event) -> None:
        loops: list[Loop] = [self.consumer.run, self._clock]
        if self.alerts.webhook is not None:
            loops.append(self.alerts.webhook.run)
        try:
            await run_all(loops, stop)
        finally:
            with contextlib.suppress(Exception):  # the producer may be gone: the folds die with the process
                await self.alerts.publish_due(force=True)

    async def _clock(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.risk_tick_s)
            await self.tick()

    async def tick(self) -> None:
        """Evaluate the spend windows (issuing and releasing lite mode), then publish the folds that closed.
        A command the control topic did not take is tried again at the next tick, in order."""
        now = self._spend_clock()
        self._changes += self.spikes.evaluate(now)
        while self._changes:
            try:
                await self._spike(self._changes[0], now)
            except Exception as exc:  # Kafka unavailable: the stage goes on, the command waits
                log.warning("lite-mode command not sent; trying again", stage="risk", error=str(exc)[:200])
                break
            self._changes.pop(0)
        await self.alerts.publish_due(now)

    def _spend_clock(self) -> int:
        """The spend windows' "now": while records are being handled, the latest result's created_at (a
        stage that lags behind still sees a burst as a burst); once idle, the wall clock (time passes, and
        spend that stopped becomes calm). Never backwards."""
        wall = self._now()
        busy = wall - self._last_record < max(1000.0, 2000 * self.settings.risk_tick_s)
        self._clock_ms = max(self._clock_ms, self._watermark if busy and self._watermark else wall)
        return self._clock_ms

    # -- records ---------------------------------------------------------------------------

    async def handle(self, incoming: Incoming) -> None:
        self._last_record = self._now()
        if incoming.topic == self.tasks or incoming.topic.startswith(self.tenant_tasks):
            task = self._decode("TaskRequested", incoming)
            if task is not None:
                self._exposures(task, incoming)
        elif incoming.topic == self.results:
            result = self._decode("TaskResult", incoming)
            if result is not None:
                self._result(result, incoming)
        elif incoming.topic == self.dead_letters:
            dead = self._decode("DeadLetter", incoming)
            if dead is not None:
                self._dead_letter(dead)

    def _decode(self, event_type: str, incoming: Incoming) -> Record | None:
        try:
            return self.codec.decode_as(event_type, incoming.value or b"")
        except DecodeError:
            return None  # the stage that owns the topic dead-letters it; here it is nothing to watch

    def _exposures(self, task: Record, incoming: Incoming) -> None:
        found = exposures(task)
        if not found:
            return
        tenant = tenant_of(task)
        where = f"{incoming.topic}[{incoming.partition}]@{incoming.offset}"
        kinds = sorted({k for hits in found.values() for k in hits})
        count = sum(sum(hits.values()) for hits in found.values())
        self.alerts.raise_(
            "key_exposure", "critical", tenant,
            f"credential-looking text ({', '.join(kinds)}) in tasks of tenant {tenant}: rotate the key",
            {"task_id": task["task_id"], "last_location": f"{where} {', '.join(sorted(found))}"}, count=count,
            lists={"kinds": kinds, "locations": [f"{where} {name}" for name in sorted(found)]})

    def _result(self, result: Record, incoming: Incoming) -> None:
        tenant, now = tenant_of(result), self._now()
        created = int(result.get("created_at") or now)
        self._watermark = max(self._watermark, created)
        self.spikes.add(tenant, float(result.get("cost_usd") or 0.0), created)
        if result["status"] == "budget_exceeded":
            self.alerts.raise_("budget_exhausted", "warning", tenant, f"tenant {tenant}: tasks end on a spent budget",
                               {"last_task_id": result["task_id"], "error": str(result.get("error") or "")[:300]},
                               lists={"task_ids": [result["task_id"]]})
        where = f"{incoming.topic}[{incoming.partition}]@{incoming.offset}"
        conflict = self.conflicts.add(result, where, now)
        if conflict is not None:
            self.alerts.raise_("agent_conflict", "warning", tenant,
                               f"task {conflict.task_id} has two results with different content (run twice)",
                               {"task_id": conflict.task_id, "first": conflict.first, "second": conflict.second},
                               lists={"task_ids": [conflict.task_id]})

    def _dead_letter(self, dead: Record) -> None:
        recent = self.dead_burst.add(self._now())
        if recent >= self.settings.risk_deadletter_burst:
            self.alerts.raise_("dead_letter_burst", "warning", GLOBAL,
                               f"{recent} dead letters in {self.settings.risk_deadletter_window_s:g} s",
                               {"in_window": str(recent), "last_stage": dead["stage"],
                                "last_error": str(dead["error"])[:200]},
                               lists={"stages": [dead["stage"]], "topics": [dead["topic"]]})

    # -- cost spikes -----------------------------------------------------------------------

    async def _spike(self, change: SpikeChange, now: int) -> None:
        s = self.settings
        tenant = None if change.scope == GLOBAL else change.scope
        who = f"tenant {tenant}" if tenant else "all tenants"
        figures = {"window_usd": f"{change.current_usd:.9f}", "baseline_usd": f"{change.baseline_usd:.9f}",
                   "window_s": f"{s.risk_spike_window_s:g}", "factor": f"{s.risk_spike_factor:g}",
                   "floor_usd": f"{s.risk_spike_floor_usd:g}"}
        on = change.change != "release"
        reason = (f"cost spike: ${change.current_usd:.6f} in {s.risk_spike_window_s:g} s against a baseline of "
                  f"${change.baseline_usd:.6f}" if on else "calm again after a cost spike")
        command = lite_mode_command(on, reason, "risk:cost_spike", tenant, s.risk_lite_for_s if on else None, now)
        await self._control(command_key(command), self.codec.encode("ControlCommand", command))
        log.warning("lite mode by the risk stage", stage="risk", scope=change.scope, change=change.change, **figures)
        if change.change == "spike":
            self.alerts.raise_("cost_spike", "critical", change.scope,
                               f"cost spike for {who}: lite mode on for {s.risk_lite_for_s:g} s (alert finance)",
                               {**figures, "lite_mode": "on", "expires_at": str(command["expires_at"])},
                               now=now, fold=False)
        elif change.change == "release":
            self.alerts.raise_("cost_spike_released", "info", change.scope,
                               f"spend of {who} calm for {s.risk_calm_s:g} s: lite mode off",
                               {**figures, "lite_mode": "off"}, now=now, fold=False)
