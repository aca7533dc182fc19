"""The task stage's durable state: tenant spend, and per task its attempts, answered calls and "done" mark.

Two topics partitioned like agent.tasks.by-tenant, each record written to the partition of its
tenant explicitly (`tenant_partition`), so partition p of the ledgers holds exactly the state of
the tasks of partition p: the worker that owns p reads ledger p to its end before it starts a task
of p, and is then the only writer of it (docs/delivery.md). Keys are JSON arrays.

- agent.ledger.spend (compacted): what was paid for. `["step", id, step, candidate]` a model call's
  answer (the step cache) with the cumulative spend of its `tenant|day` including it;
  `["spend", "tenant|day"]` the cumulative spend alone. Steps are tombstoned once their task is done.
- agent.ledger.tasks (compacted, deleted after twice the dedupe window): `["run", id]` the attempt
  started, `["done", id]` the result's created_at and attempt.

Why an answer and its charge are one record: a partition's writes reach the broker in order (one
queue, an idempotent producer), so after a crash the broker holds a prefix of them. Were they two
records, a prefix could hold the charge without the answer, and the task's rerun would pay for the
call again. Totals are cumulative and only grow, so the spend of a key is the largest total read,
whatever compaction kept. `flush(p)` writes the totals of calls that had no answer to keep (failed
calls) and waits until the broker has every write of p: a task's offset is finished only after
that, so a committed task always has its spend and done mark on the broker. Its answers are
tombstoned only after that flush, so a done mark is never missing while its answers are gone.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from agents.clock import now_ms
from schemas.events import Record
from streams import kafka
from streams.lifecycle import close, crash_point, started
from streams.logs import get_logger
from streams.settings import Settings
from streams.topics import SPEND_LEDGER, TASK_LEDGER

__all__ = ["LedgerSpendStore", "TaskLedger", "TaskStepCache", "spend_total", "tenant_partition"]

log = get_logger(__name__)

_LOAD_TIMEOUT_S = 60.0


def tenant_partition(tenant_key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives a tenant key: the tenant's partition."""
    return (murmur2(tenant_key) & 0x7FFFFFFF) % partitions


def _key(*parts: Any) -> bytes:
    return json.dumps(parts, separators=(",", ":")).encode()


def spend_total(key: bytes | None, value: bytes | None) -> tuple[str, float] | None:
    """The `tenant|day` and cumulative total a spend ledger record carries, if any (answers and totals
    both do); the spend of a key is the largest total over its records."""
    if key is None or value is None:
        return None
    body = json.loads(value)
    if json.loads(key)[0] == "spend":
        return json.loads(key)[1], float(body["total"])
    return (body["spend"], float(body["total"])) if "spend" in body else None


@dataclass
class _Write:
    topic: str
    partition: int
    key: bytes
    value: bytes | None
    done: asyncio.Future[None]


class TaskLedger:
    """In-memory view of the ledger partitions this worker has read, plus ordered writes to them."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self.settings, self.producer = settings, producer
        self.spend_topic, self.task_topic = settings.topic(SPEND_LEDGER), settings.topic(TASK_LEDGER)
        self.window_ms = int(settings.task_dedupe_window_s * 1000)
        self._spend: dict[str, float] = {}  # tenant|day -> settled total (what budgets check)
        self._logged: dict[str, float] = {}  # tenant|day -> the part of it queued for the broker
        self._done: dict[str, int] = {}  # task id -> when its result was made (ms)
        self._runs: dict[str, int] = {}  # task id -> attempts started
        self._steps: dict[str, dict[tuple[int, str], Record]] = {}
        self._positions: dict[TopicPartition, int] = {}  # next offset to read, per ledger partition
        self._queue: asyncio.Queue[_Write] = asyncio.Queue()
        self._pending: dict[int, set[asyncio.Future[None]]] = {}
        self._reader: AIOKafkaConsumer | None = None
        self._writer: asyncio.Task[None] | None = None
        self._load_lock = asyncio.Lock()
        self._swept_at = time.monotonic()

    async def start(self) -> None:
        self._reader = await started(lambda: kafka.consumer(self.settings, auto_offset_reset="earliest"),
                                     self.settings.startup_timeout_s, "ledger-reader")
        self._writer = asyncio.create_task(self._write_in_order())

    async def stop(self) -> None:
        for p in range(self.settings.partitions):
            await self.flush(p)
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._reader is not None:
            await close(self._reader, "ledger-reader")

    # -- reading ---------------------------------------------------------------------------

    async def catch_up(self, partitions: Iterable[int]) -> None:
        """Read ledger partitions to their current end (from where this worker last stopped reading:
        its own writes are in memory already, re-reading them is harmless). Before any task of them."""
        assert self._reader is not None
        tps = [TopicPartition(topic, p) for p in sorted(set(partitions))
               for topic in (self.spend_topic, self.task_topic)]
        if not tps:
            return
        async with self._load_lock:
            started = time.monotonic()
            self._reader.assign(tps)
            ends = await self._reader.end_offsets(tps)
            for tp in tps:
                self._reader.seek(tp, self._positions.get(tp, 0))  # out of range (deleted): reset to the start
            behind = {tp for tp in tps if self._positions.get(tp, 0) < ends[tp]}
            read, answered = 0, {}
            while behind:
                if time.monotonic() - started > _LOAD_TIMEOUT_S:
                    raise TimeoutError(f"ledger partitions not read to their end: {sorted(map(str, behind))}")
                got = await self._reader.getmany(*behind, timeout_ms=500)
                for messages in got.values():
                    for m in messages:
                        self._apply(m.topic, m.key, m.value)
                        if m.topic == self.spend_topic and m.value is not None and m.key.startswith(b'["step"'):
                            answered[json.loads(m.key)[1]] = m.partition
                    read += len(messages)
                for tp in list(behind):
                    position = await self._reader.position(tp)
                    self._positions[tp] = position
                    if position >= ends[tp]:
                        behind.discard(tp)
            for task_id, partition in answered.items():  # a crash came between a done mark and its forget
                if task_id in self._done and task_id in self._steps:
                    self.forget(partition, task_id)
            log.info("ledger read", stage="ledger", partitions=sorted({tp.partition for tp in tps}), records=read,
                     seconds=round(time.monotonic() - started, 3))

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None or not key.startswith(b"["):  # not a record of this ledger's format
            return
        kind, task_id, *rest = json.loads(key)
        body = None if value is None else json.loads(value)
        charged = spend_total(key, value) if topic == self.spend_topic else None
        if charged is not None:
            spend_key, total = charged
            for totals in (self._spend, self._logged):
                totals[spend_key] = max(totals.get(spend_key, 0.0), total)
        if kind == "done":
            if body is None:
                self._done.pop(task_id, None)
            else:
                self._done[task_id] = int(body["at"])
        elif kind == "run":
            if body is None:
                self._runs.pop(task_id, None)
            else:
                self._runs[task_id] = max(self._runs.get(task_id, 0), int(body["attempt"]))
        elif kind == "step":
            steps = self._steps.setdefault(task_id, {})
            if body is None:
                steps.pop((int(rest[0]), str(rest[1])), None)
                if not steps:
                    self._steps.pop(task_id, None)
            else:
                steps[(int(rest[0]), str(rest[1]))] = body["record"]

    # -- spend -----------------------------------------------------------------------------

    def spent(self, key: str) -> float:
        return self._spend.get(key, 0.0)

    def add_spend(self, key: str, amount: float) -> None:
        """Add a settled call's cost to `tenant|day`; it is written with the call's answer, or by `flush`."""
        self._spend[key] = self._spend.get(key, 0.0) + amount

    def _log(self, key: str, amount: float) -> float:
        """Move `amount` (at most what is settled and not yet written) of `key` into the written total."""
        unlogged = self._spend.get(key, 0.0) - self._logged.get(key, 0.0)
        total = self._logged[key] = self._logged.get(key, 0.0) + max(0.0, min(amount, unlogged))
        return total

    def _log_the_rest(self, partition: int) -> None:
        """Queue a total for every key of `partition` with settled spend not yet written."""
        for key, settled in self._spend.items():
            if settled > self._logged.get(key, 0.0) and self._spend_partition(key) == partition:
                total = self._log(key, settled)
                self._put(self.spend_topic, partition, _key("spend", key), json.dumps({"total": total}).encode())

    def _spend_partition(self, key: str) -> int:
        return tenant_partition(key.rsplit("|", 1)[0].encode(), self.settings.partitions)

    # -- tasks -----------------------------------------------------------------------------

    def is_done(self, task_id: str) -> bool:
        """Answered within the dedupe window."""
        at = self._done.get(task_id)
        return at is not None and now_ms() - at <= self.window_ms

    def begin(self, partition: int, task_id: str) -> int:
        """Record a new attempt of the task; its number (1 for the first run)."""
        attempt = self._runs.get(task_id, 0) + 1
        self._runs[task_id] = attempt
        self._put(self.task_topic, partition, _key("run", task_id), json.dumps({"attempt": attempt}).encode())
        return attempt

    def step_cache(self, partition: int, task_id: str, spend_key: str,
                   abandoned: Callable[[], bool] = lambda: False) -> TaskStepCache:
        """The task's answered calls; each new one is written with its charge to `spend_key` (tenant|day),
        unless the task was `abandoned()` meanwhile (its partition is someone else's now)."""
        return TaskStepCache(self, partition, task_id, spend_key, abandoned)

    def keep_answer(self, partition: int, task_id: str, step: int, candidate: str, record: Record,
                    spend_key: str) -> None:
        """Keep a call's answer and its charge, in one record (see the module docstring)."""
        self._steps.setdefault(task_id, {})[(step, candidate)] = record
        total = self._log(spend_key, float(record.get("cost_usd") or 0.0))
        body = {"record": record, "spend": spend_key, "total": total}
        self._put(self.spend_topic, partition, _key("step", task_id, step, candidate), json.dumps(body).encode())

    def end(self, partition: int, task_id: str, done_at: int | None, attempt: int) -> None:
        """The task will not run again: mark it done (unless it failed as a bug). `flush` then `forget`."""
        if done_at is not None:
            self._done[task_id] = done_at
            self._put(self.task_topic, partition, _key("done", task_id),
                      json.dumps({"at": done_at, "attempt": attempt}).encode())

    def forget(self, partition: int, task_id: str) -> None:
        """Tombstone a finished task's answered calls and attempt. Only after its done mark is on the
        broker (`flush`): answers gone while the mark is missing would make a rerun pay again."""
        for step, candidate in self._steps.pop(task_id, {}):
            self._put(self.spend_topic, partition, _key("step", task_id, step, candidate), None)
        if self._runs.pop(task_id, None) is not None:
            self._put(self.task_topic, partition, _key("run", task_id), None)

    def sweep(self, every_s: float = 30.0) -> None:
        """Forget done marks older than the window (at most every `every_s`)."""
        if time.monotonic() - self._swept_at < every_s:
            return
        self._swept_at = time.monotonic()
        oldest = now_ms() - self.window_ms
        for task_id in [t for t, at in self._done.items() if at < oldest]:
            del self._done[task_id]

    # -- writing ---------------------------------------------------------------------------

    def _put(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending = self._pending.setdefault(partition, set())
        pending.add(done)
        done.add_done_callback(pending.discard)
        done.add_done_callback(lambda f: f.cancelled() or f.exception())  # reported by flush, not as "never retrieved"
        self._queue.put_nowait(_Write(topic, partition, key, value, done))

    async def flush(self, partition: int) -> None:
        """Write the settled spend of `partition` not yet written, then wait until the broker has every
        ledger write of `partition` queued so far (raises if one failed)."""
        self._log_the_rest(partition)
        waiting = list(self._pending.get(partition, ()))
        if waiting:
            await asyncio.gather(*waiting)

    async def _write_in_order(self) -> None:
        while True:
            write = await self._queue.get()
            try:
                delivery = await self.producer.send(write.topic, write.value, key=write.key,
                                                    partition=write.partition)
            except Exception as exc:  # reported to whoever flushes this partition
                write.done.set_exception(exc)
                continue
            delivery.add_done_callback(lambda f, w=write: _settle(w.done, f))


def _settle(done: asyncio.Future[None], delivery: asyncio.Future[Any]) -> None:
    if done.done():
        return
    if delivery.cancelled():
        done.cancel()
    elif delivery.exception() is not None:
        done.set_exception(delivery.exception())  # type: ignore[arg-type]
    else:
        done.set_result(None)


class TaskStepCache:
    """A task's answered model calls (agents.swarm.StepCache), kept in its ledger partition."""

    def __init__(self, ledger: TaskLedger, partition: int, task_id: str, spend_key: str,
                 abandoned: Callable[[], bool]) -> None:
        self.ledger, self.partition, self.task_id, self.spend_key = ledger, partition, task_id, spend_key
        self.abandoned = abandoned

    def get(self, step: int, candidate: str) -> Record | None:
        return self.ledger._steps.get(self.task_id, {}).get((step, candidate))

    def put(self, step: int, candidate: str, record: Record) -> None:
        if self.abandoned():  # a lost cancellation: this worker no longer writes the partition
            raise asyncio.CancelledError
        self.ledger.keep_answer(self.partition, self.task_id, step, candidate, record, self.spend_key)
        crash_point(self.ledger.settings.fault_point, "task-after-answer")


class LedgerSpendStore:
    """The budget ledger's SpendStore (agents/budget.py) over the spend ledger."""

    def __init__(self, ledger: TaskLedger) -> None:
        self.ledger = ledger

    def get(self, key: str) -> float:
        return self.ledger.spent(key)

    def add(self, key: str, amount: float) -> None:
        self.ledger.add_spend(key, amount)
