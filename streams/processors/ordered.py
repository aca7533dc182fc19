"""An ordered consumer: the records of some topics, one at a time in partition order, committed only
past the records handled.

The prompt judge, prompt scoring and the code-change processor run on it (the task stage, which runs
many tasks at once, has its own loop: streams/processors/tasks.py). Like the task stage, and unlike a
Faust agent, nothing is committed that was not handled: a record fetched but not yet handled when its
partition is revoked, or when the worker stops, is read again by the next owner (docs/delivery.md).
Handlers must therefore be idempotent (they key what they send by stable ids).

A record that fails is a dead letter at the consumer's stage; a failure that says a server is
unavailable (Kafka, PostgreSQL, the network) is not the record's fault: it is tried again, with
backoff, until it passes or the worker stops, and nothing after it is handled meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from streams import kafka
from streams.lifecycle import close, started
from streams.logs import get_logger
from streams.observability.telemetry import telemetry
from streams.processors.guard import Guard, Handler, Incoming
from streams.settings import Settings

__all__ = ["OrderedConsumer", "RebalanceHooks", "is_unavailable"]

log = get_logger(__name__)

_BACKOFF_MAX_S = 5.0


def is_unavailable(exc: BaseException) -> bool:
    """A failure that says a server cannot be reached right now, not that the record is bad."""
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    return isinstance(exc, psycopg.OperationalError | ConnectionError | TimeoutError)


class _Stopping(Exception):
    """The worker stops while a record waits for a server: it stays unhandled and uncommitted."""


class RebalanceHooks(ConsumerRebalanceListener):
    """aiokafka's rebalance listener, calling `revoked(partitions)` and `assigned(partitions)` (awaited)."""

    def __init__(self, revoked: Callable[[set[TopicPartition]], Awaitable[None]],
                 assigned: Callable[[set[TopicPartition]], Awaitable[None]] | None = None) -> None:
        self.revoked, self.assigned = revoked, assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self.assigned is not None:
            await self.assigned(set(assigned))


class OrderedConsumer:
    """Consumer group `<app id>-<name>` running `handle` on every record of `topics`, in order."""

    def __init__(self, settings: Settings, name: str, topics: list[str], guard: Guard, handle: Handler,
                 assignors: tuple[type, ...] | None = None, pattern: str | None = None) -> None:
        self.settings, self.name, self.topics, self.guard, self.handle = settings, name, topics, guard, handle
        self.assignors = assignors  # aiokafka partition assignors; None: aiokafka's default
        self.pattern = pattern  # set: the topics matching it (topics added later too) instead of `topics`
        self.handled = self.dead = 0
        self._next: dict[TopicPartition, int] = {}  # next offset to commit, per partition handled since the last commit
        self._lock = asyncio.Lock()  # held while a record is handled: a revocation waits for it
        self._generation = 0  # bumped by each revocation: records fetched before it are dropped, read again
        self._consumer: AIOKafkaConsumer | None = None
        self._stop = asyncio.Event()

    @property
    def group_id(self) -> str:
        return f"{self.settings.app_id}-{self.name}"

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the record in hand is finished (or left uncommitted) first."""
        s = self.settings
        self._stop = stop

        def consumer() -> AIOKafkaConsumer:
            made = kafka.consumer(
                s, group_id=self.group_id, auto_offset_reset="earliest",
                session_timeout_ms=int(s.session_timeout_s * 1000),
                heartbeat_interval_ms=int(s.session_timeout_s * 250),
                rebalance_timeout_ms=int((s.drain_timeout_s + s.session_timeout_s) * 1000),
                **({"partition_assignment_strategy": self.assignors} if self.assignors else {}),
                **({"metadata_max_age_ms": 5000} if self.pattern else {}))
            if self.pattern:
                made.subscribe(pattern=self.pattern, listener=RebalanceHooks(self.revoke))
            else:
                made.subscribe(self.topics, listener=RebalanceHooks(self.revoke))
            self._consumer = made  # the listener may run (and commit) before start() returns
            return made

        self._consumer = await started(consumer, s.startup_timeout_s, self.name)
        log.info("processor started", stage=self.name, group=self.group_id, topics=self.topics)
        try:
            while not stop.is_set():
                got = await self._consumer.getmany(timeout_ms=200, max_records=200)
                await self._handle_batch(got)
                async with self._lock:
                    await self._commit()
        except _Stopping:
            pass
        finally:
            async with self._lock:
                await self._commit()
            await close(self._consumer, self.name)
            log.info("processor stopped", stage=self.name, handled=self.handled, dead_letters=self.dead)

    async def _handle_batch(self, got: dict[TopicPartition, list[Any]]) -> None:
        generation = self._generation
        for tp, messages in got.items():
            for message in messages:
                async with self._lock:
                    if generation != self._generation or self._stop.is_set():
                        return  # revoked meanwhile: the rest is read again by whoever owns it now
                    with telemetry.consuming(message, self.name):
                        await self._handle_one(message)
                    self._next[tp] = message.offset + 1

    async def _handle_one(self, message: Any) -> None:
        incoming, delay = Incoming.of(message), 0.5
        while True:
            try:
                await self.handle(incoming)
                self.handled += 1
                return
            except Exception as exc:  # the record's fault (a dead letter) or a server's (tried again)
                if not is_unavailable(exc):
                    await self._dead(incoming, exc)
                    return
                log.warning("server unavailable; trying the record again", stage=self.name, topic=incoming.topic,
                            partition=incoming.partition, offset=incoming.offset, error=str(exc)[:200])
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
                raise _Stopping
            except TimeoutError:
                delay = min(delay * 2, _BACKOFF_MAX_S)

    async def _dead(self, incoming: Incoming, exc: Exception) -> None:
        delay = 0.5
        while True:
            try:
                await self.guard.dead(self.name, incoming, exc)
                self.dead += 1
                return
            except Exception as send_failed:  # the dead letter must be kept: the record is not skipped
                log.warning("dead letter not sent; trying again", stage=self.name, error=str(send_failed)[:200])
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
                raise _Stopping
            except TimeoutError:
                delay = min(delay * 2, _BACKOFF_MAX_S)

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        """Wait for the record in hand, commit what was handled, drop what was fetched and not handled."""
        async with self._lock:
            self._generation += 1
            await self._commit()
            for tp in revoked:
                self._next.pop(tp, None)

    async def _commit(self) -> None:
        if not self._next or self._consumer is None:
            return
        offsets, self._next = self._next, {}
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # the group moved on: the next owner reads from the last commit
            log.warning("commit failed", stage=self.name, error=str(exc)[:200])
