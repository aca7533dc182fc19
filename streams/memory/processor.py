"""Sink processors: aiokafka batch consumers that write topics to the memory tiers, then commit.

Not Faust (docs/architecture.md): the bulk paths read with `getmany` in their own consumer groups and write
whole batches. The offsets of a batch are committed only after every tier it is routed to took it:
at-least-once delivery plus idempotent tiers gives exactly-once in effect. When a tier is down the
processor pauses its partitions (nothing is read ahead; memory stays bounded by one batch), retries
with exponential backoff until the tier is back, and goes on. Only records that can never be
written (undecodable, or refused by a tier for what they are) go to agent.deadletters.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from schemas import Codec, DecodeError
from sinks.base import MemoryRecord, Rejection, Tier, TierUnavailable
from streams import kafka
from streams.lifecycle import crash_point
from streams.logs import get_logger
from streams.observability.telemetry import telemetry
from streams.processors.guard import Guard, Incoming
from streams.settings import Settings
from streams.topics import DEADLETTERS

__all__ = ["SinkProcessor"]

log = get_logger(__name__)

Route = Callable[[MemoryRecord], Sequence[str]]


class _ForgetOnRebalance(ConsumerRebalanceListener):
    """Tiers that cache what a partition holds (the archive's listings) re-read it after a rebalance:
    another process may have written while the partition was away."""

    def __init__(self, tiers: dict[str, Tier]) -> None:
        self.tiers = tiers

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        for tier in self.tiers.values():
            forget = getattr(tier, "forget", None)
            if forget is not None:
                forget()


class SinkProcessor:
    """One consumer group writing `topics` to `tiers` by `route`, in bounded batches."""

    def __init__(self, settings: Settings, codec: Codec, name: str, topics: list[str], tiers: dict[str, Tier],
                 route: Route, *, max_records: int, max_bytes: int = 64 * 1024 * 1024, max_wait_s: float = 0.5,
                 keep_undecodable: bool = False) -> None:
        self.settings, self.codec, self.name, self.topics = settings, codec, name, topics
        self.tiers, self.route = tiers, route
        self.max_records, self.max_bytes, self.max_wait_s = max_records, max_bytes, max_wait_s
        self.keep_undecodable = keep_undecodable
        self.written: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self.batches = 0
        self.retries = 0
        self.dead = 0
        self.last_active = time.monotonic()  # the start, or the last batch read or written (for idle exits)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._guard: Guard | None = None

    @property
    def group_id(self) -> str:
        return f"{self.settings.app_id}-sink-{self.name}"

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished first."""
        self._consumer = kafka.consumer(
            self.settings, group_id=self.group_id, auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=int(self.settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.session_timeout_s * 250))
        self._consumer.subscribe(self.topics, listener=_ForgetOnRebalance(self.tiers))
        self._producer = kafka.producer(self.settings)
        self._guard = Guard(self.codec, self._send_dead)
        try:
            await self._producer.start()
            await self._consumer.start()
            await self._setup_tiers(stop)
            log.info("sink started", stage=f"sink-{self.name}", topics=self.topics, tiers=sorted(self.tiers))
            self.last_active = time.monotonic()
            while not stop.is_set():
                batch = await self._collect(stop)
                if batch:
                    self.last_active = time.monotonic()
                    await self._deliver(batch, stop)
                    self.last_active = time.monotonic()
        finally:
            await self._consumer.stop()
            await self._producer.stop()
            for tier in self.tiers.values():
                tier.close()

    async def _setup_tiers(self, stop: asyncio.Event) -> None:
        for name, tier in self.tiers.items():
            await self._retry(name, tier.setup, stop)

    async def _collect(self, stop: asyncio.Event) -> list[Any]:
        """Up to max_records / max_bytes, or whatever came within max_wait_s of the first record."""
        assert self._consumer is not None
        batch: list[Any] = []
        size, first_at = 0, None
        while not stop.is_set() and len(batch) < self.max_records and size < self.max_bytes:
            wait = self.max_wait_s if first_at is None else self.max_wait_s - (time.monotonic() - first_at)
            if wait <= 0:
                break
            got = await self._consumer.getmany(timeout_ms=int(wait * 1000), max_records=self.max_records - len(batch))
            for messages in got.values():
                batch.extend(messages)
                size += sum(len(m.value or b"") for m in messages)
            if batch and first_at is None:
                first_at = time.monotonic()
        return batch

    def _decode(self, messages: list[Any]) -> tuple[list[MemoryRecord], list[tuple[Any, Exception]]]:
        records, bad = [], []
        for m in messages:
            try:
                event_type, record = self.codec.decode(m.value)
                records.append(MemoryRecord(event_type, record, m.topic, m.partition, m.offset, m.timestamp,
                                            m.key, m.value))
            except (DecodeError, KeyError) as exc:
                bad.append((m, exc))
                if self.keep_undecodable:  # the archive keeps the bytes as they were
                    records.append(MemoryRecord("", {}, m.topic, m.partition, m.offset, m.timestamp, m.key,
                                                m.value or b"", id=f"{m.topic}:{m.partition}:{m.offset}"))
        return records, bad

    async def _deliver(self, messages: list[Any], stop: asyncio.Event) -> None:
        records, bad = self._decode(messages)
        if not self.keep_undecodable:
            for m, exc in bad:
                await self._dead(f"sink-{self.name}-decode", m, str(exc))
        for name, tier in self.tiers.items():
            subset = [r for r in records if name in self.route(r)]
            if not subset:
                continue
            started = time.perf_counter()
            rejected = await self._write(name, tier, subset, stop)
            if rejected is None:
                return  # stopping with the batch unwritten: not committed, redelivered on restart
            self.seconds[name] += time.perf_counter() - started
            self.written[name] += len(subset) - len(rejected)
            telemetry.sink_written(name, subset, rejected, started, messages)
            for rejection in rejected:
                r = rejection.record
                await self._dead(f"sink-{name}", r, rejection.reason)
        crash_point(self.settings.fault_point, "sink-after-write")
        await self._commit(messages)
        self.batches += 1

    async def _write(self, name: str, tier: Tier, subset: list[MemoryRecord],
                     stop: asyncio.Event) -> list[Rejection] | None:
        """Write with retry while the tier is down; a batch that fails for another reason is split
        record by record so only the records that fail themselves are rejected."""
        try:
            return await self._retry(name, lambda: tier.write(subset), stop)
        except Exception as exc:
            if len(subset) == 1:
                return [Rejection(subset[0], f"{type(exc).__name__}: {exc}")]
            log.warning("batch refused, writing one by one", stage=f"sink-{name}", error=str(exc)[:200])
            rejected: list[Rejection] = []
            for record in subset:
                one = await self._write(name, tier, [record], stop)
                if one is None:
                    return None
                rejected.extend(one)
            return rejected

    async def _retry(self, name: str, call: Callable[[], Any], stop: asyncio.Event) -> Any:
        """Run `call` in a thread until it does not raise TierUnavailable; input is paused meanwhile."""
        assert self._consumer is not None
        backoff, paused = 0.2, False
        try:
            while True:
                try:
                    return await asyncio.to_thread(call)
                except TierUnavailable as exc:
                    if stop.is_set():
                        return None
                    self.retries += 1
                    delay = min(max(backoff, exc.retry_after), self.settings.sink_max_backoff_s)
                    log.warning("tier unavailable, pausing input", stage=f"sink-{name}", error=str(exc)[:200],
                                retry_in_s=round(delay, 2))
                    paused = True
                    await self._idle(delay)
                    backoff = min(backoff * 2, self.settings.sink_max_backoff_s)
        finally:
            if paused:
                self._consumer.resume(*self._consumer.assignment())

    async def _idle(self, seconds: float) -> None:
        """Wait while paused, still polling (so the group keeps us); anything fetched is sought back."""
        assert self._consumer is not None
        self._consumer.pause(*self._consumer.assignment())
        got = await self._consumer.getmany(timeout_ms=int(seconds * 1000))
        for tp, messages in got.items():  # a partition assigned meanwhile was not paused: read it later
            self._consumer.seek(tp, messages[0].offset)

    async def _commit(self, messages: list[Any]) -> None:
        assert self._consumer is not None
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:  # a rebalance: the new owner rewrites, idempotently
            log.warning("commit failed; the batch will be written again", stage=f"sink-{self.name}",
                        error=str(exc)[:200])

    async def _dead(self, stage: str, m: Any, reason: str) -> None:
        """`m`: a consumed record or a MemoryRecord (both have what a dead letter keeps)."""
        assert self._guard is not None
        self.dead += 1
        await self._guard.dead(stage, Incoming.of(m), reason)

    async def _send_dead(self, key: bytes | None, value: bytes) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(self.settings.topic(DEADLETTERS), value, key=key)
