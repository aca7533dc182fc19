"""The control topic: commands every worker follows, and the state they add up to.

agent.control is compacted and keyed by command and scope, so the latest record of each key is the
command in force. Every worker reads it from the beginning with a plain consumer (no group: every
worker needs every record) and keeps following it; a new command is applied within about a fetch
(0.2-0.5 s). The one command so far is lite mode (global or per tenant, with an optional expiry).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from agents.clock import now_ms
from schemas import Codec, DecodeError
from schemas.events import Record
from streams import kafka
from streams.admin import ensure_topics
from streams.lifecycle import close, started
from streams.logs import get_logger
from streams.settings import Settings
from streams.topics import CONTROL, topic_specs

__all__ = ["LITE_MODE", "ControlFollower", "ControlState", "command_key", "ensure_control_topic",
           "lite_mode_command", "read_commands", "send_command"]

log = get_logger(__name__)

LITE_MODE = "lite_mode"


def command_key(command: Record) -> bytes:
    """The compaction key: one command per scope (`lite_mode|global`, `lite_mode|tenant|acme`)."""
    scope = "global" if command["scope"] == "global" else f"tenant|{command.get('tenant') or ''}"
    return f"{command['command']}|{scope}".encode()


def lite_mode_command(on: bool, reason: str, issued_by: str, tenant: str | None = None,
                      for_s: float | None = None, now: int | None = None) -> Record:
    """A ControlCommand switching lite mode on or off, for one tenant or for all (`tenant` None)."""
    issued = now if now is not None else now_ms()
    return {"command_id": f"cmd-{uuid.uuid4().hex[:16]}", "command": LITE_MODE,
            "scope": "tenant" if tenant else "global", "tenant": tenant, "value": "on" if on else "off",
            "reason": reason, "issued_by": issued_by, "issued_at": issued,
            "expires_at": issued + int(for_s * 1000) if for_s else None}


@dataclass
class ControlState:
    """The commands in force, by key: the latest record of each key (as compaction keeps it)."""

    commands: dict[bytes, Record] = field(default_factory=dict)

    def apply(self, command: Record) -> None:
        self.commands[command_key(command)] = command

    def lite_scope(self, tenant: str, now: int | None = None) -> str | None:
        """"tenant" or "global" when lite mode is on for `tenant` (its own command first), None when it is not."""
        at = now if now is not None else now_ms()
        for scope, key in (("tenant", f"{LITE_MODE}|tenant|{tenant}"), ("global", f"{LITE_MODE}|global")):
            command = self.commands.get(key.encode())
            if command is not None and _in_force(command, at):
                return scope
        return None

    def active(self, now: int | None = None) -> list[Record]:
        """The commands switched on and not expired."""
        at = now if now is not None else now_ms()
        return [c for c in self.commands.values() if _in_force(c, at)]


def _in_force(command: Record, at: int) -> bool:
    return command["value"] == "on" and (command.get("expires_at") is None or command["expires_at"] > at)


class ControlFollower:
    """Reads agent.control from the beginning, then follows it, into `state` (one per worker)."""

    def __init__(self, settings: Settings, codec: Codec, state: ControlState | None = None) -> None:
        self.settings, self.codec = settings, codec
        self.state = state if state is not None else ControlState()
        self.applied = 0

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        topic = s.topic(CONTROL)
        consumer = await started(lambda: kafka.consumer(s, auto_offset_reset="earliest", fetch_max_wait_ms=100),
                                 s.startup_timeout_s, "control")
        try:
            partitions = consumer.partitions_for_topic(topic) or {0}
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            log.info("following the control topic", stage="control", topic=topic)
            while not stop.is_set():
                got = await consumer.getmany(timeout_ms=200, max_records=500)
                for messages in got.values():
                    for message in messages:
                        self._apply(message)
        finally:
            await close(consumer, "control")

    def _apply(self, message: Any) -> None:
        try:
            command = self.codec.decode_as("ControlCommand", message.value or b"")
        except DecodeError as exc:  # a tombstone or a stranger's bytes: nothing to apply
            log.warning("control record not applied", stage="control", offset=message.offset, error=str(exc)[:200])
            return
        self.state.apply(command)
        self.applied += 1
        log.info("control command applied", stage="control", command_id=command["command_id"],
                 command=command["command"], scope=command["scope"],
                 tenant=command.get("tenant"), value=command["value"], reason=command["reason"],
                 issued_by=command["issued_by"], expires_at=command.get("expires_at"))


async def ensure_control_topic(settings: Settings) -> None:
    """The control and alert topics exist (a command may be issued before any worker ran)."""
    wanted = {settings.topic(CONTROL)}
    await ensure_topics(settings, [s for s in topic_specs(settings) if s.name in wanted])


async def send_command(settings: Settings, codec: Codec, command: Record, producer: Any = None) -> None:
    """Produce `command` to agent.control (with `producer`, or a short-lived one), keyed by command and scope."""
    own = producer is None
    if own:
        producer = kafka.producer(settings)
        await producer.start()
    try:
        await producer.send_and_wait(settings.topic(CONTROL), codec.encode("ControlCommand", command),
                                     key=command_key(command))
    finally:
        if own:
            await producer.stop()


async def read_commands(settings: Settings, codec: Codec) -> list[Record]:
    """Every command on agent.control, in order (what a worker starting now would read)."""
    from streams.client import read_topic

    return [r.record async for r in read_topic(settings, codec, settings.topic(CONTROL), from_beginning=True,
                                               idle_timeout_s=1.0) if r.record is not None]
