"""Talk to agentstream the way any user would: plain aiokafka producers and consumers (streams.kafka).

Used by the CLI (`submit`, `tail`), the demos, replay and the benchmarks. No Faust here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError

from agents.clock import now_ms
from schemas import Codec, DecodeError
from schemas.events import Record, tenant_key_of
from streams import kafka
from streams.observability.telemetry import telemetry
from streams.settings import Settings
from streams.topics import client_topics

__all__ = [
    "Received",
    "ResultWatcher",
    "dead_letter_line",
    "end_offsets",
    "existing_end_offsets",
    "make_task",
    "missing_topics",
    "read_topic",
    "submit_and_wait",
    "submit_tasks",
]

OnDead = Callable[[str, Record], None]
"""Told of a task that was dead-lettered: (task_id, the DeadLetter record)."""

def make_task(description: str, **fields: Any) -> Record:
    """A TaskRequested record with a fresh task_id and created_at; other fields take schema defaults."""
    task: Record = {"task_id": fields.pop("task_id", None) or f"task-{uuid.uuid4().hex[:12]}",
                    "description": description, "created_at": now_ms()}
    task.update({k: v for k, v in fields.items() if v is not None})
    return task


async def submit_tasks(settings: Settings, codec: Codec, tasks: Iterable[Record],
                       on_sent: Callable[[Record], None] | None = None) -> list[str]:
    """Produce tasks to agent.tasks keyed by tenant; return their ids once the broker has them all.
    With tracing on, each task starts its trace here (a `submit task` span): its record carries it."""
    topic, _ = client_topics(settings)
    producer = kafka.producer(settings, linger_ms=5)
    await producer.start()
    ids: list[str] = []
    try:
        pending = []
        for task in tasks:
            if settings.client_tenant:  # the worker takes it from the topic anyway: say so in the record too
                task = {**task, "tenant": settings.client_tenant}
            value = codec.encode("TaskRequested", task)
            with telemetry.submitting(task):
                pending.append(await producer.send(topic, value=value, key=tenant_key_of(task)))
            ids.append(task["task_id"])
            if on_sent is not None:
                on_sent(task)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return ids


@dataclass(frozen=True)
class Received:
    """One record read from a topic: where it was, and the decoded event (or why it did not decode)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    event_type: str | None
    record: Record | None
    error: str | None


async def end_offsets(settings: Settings, consumer: AIOKafkaConsumer, topic: str) -> dict[TopicPartition, int]:
    """End offset of each partition; empty when the topic does not exist.

    The partition list comes from the admin client: a consumer only learns the partitions of topics
    it subscribes to, and these readers assign partitions themselves.
    """
    admin = kafka.admin(settings)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code", 0) != 0:
        return {}
    tps = [TopicPartition(topic, p["partition"]) for p in sorted(described["partitions"], key=lambda p: p["partition"])]
    return await consumer.end_offsets(tps) if tps else {}


async def missing_topics(settings: Settings, *topics: str) -> list[str]:
    """Those of `topics` (full names) that do not exist: a producer would wait a minute for them, then fail."""
    admin = kafka.admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    refused = [d["topic"] for d in described if d.get("error_code", 0) == TopicAuthorizationFailedError.errno]
    if refused:
        raise TopicAuthorizationFailedError(f"this principal may not use topic {refused[0]!r}")
    return [d["topic"] for d in described if d.get("error_code", 0) != 0]


async def existing_end_offsets(settings: Settings, consumer: AIOKafkaConsumer, topic: str) -> dict[TopicPartition, int]:
    """`end_offsets`, with a clear error when the topic does not exist."""
    ends = await end_offsets(settings, consumer, topic)
    if not ends:
        raise ValueError(f"topic {topic!r} does not exist (have you run `agentstream up`?)")
    return ends


async def read_topic(settings: Settings, codec: Codec, topic: str, *, from_beginning: bool = False,
                     count: int | None = None, idle_timeout_s: float | None = None) -> AsyncIterator[Received]:
    """Yield decoded records of a topic (no consumer group: reading commits nothing)."""
    consumer = kafka.consumer(settings)
    await consumer.start()
    try:
        ends = await existing_end_offsets(settings, consumer, topic)
        consumer.assign(list(ends))
        for tp, end in ends.items():
            if from_beginning:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, end)
        seen, last = 0, time.monotonic()
        while count is None or seen < count:
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            if not batch:
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    return
                continue
            last = time.monotonic()
            for tp, messages in batch.items():
                for m in messages:
                    yield _received(codec, tp, m)
                    seen += 1
                    if count is not None and seen >= count:
                        return
    finally:
        await consumer.stop()


def _received(codec: Codec, tp: TopicPartition, m: Any) -> Received:
    try:
        name, record = codec.decode(m.value)
        return Received(tp.topic, tp.partition, m.offset, m.key, name, record, None)
    except DecodeError as exc:
        return Received(tp.topic, tp.partition, m.offset, m.key, None, None, str(exc))


def dead_letter_line(task_id: str, dead: Record) -> str:
    """How a dead-lettered task is reported: its id, the stage that gave up on it, and why."""
    error = " ".join(str(dead.get("error", "")).split())
    return f"{task_id}  dead-lettered at stage {dead.get('stage')}: {error[:300]}"


class ResultWatcher:
    """Collects the TaskResults of given task ids, and the dead letters of those that failed, reading
    agent.results and agent.deadletters from where they ended at `start()`.

    A task that a stage gave up on gets no result: its DeadLetter (the original TaskRequested bytes,
    the stage, the error) ends the wait for it, kept in `dead` by task id. Start the watcher before
    submitting, so nothing can slip in between:
    `async with ResultWatcher(settings, codec) as watcher:` submit, then `await watcher.wait(ids, timeout_s)`.
    """

    def __init__(self, settings: Settings, codec: Codec) -> None:
        self.settings, self.codec = settings, codec
        self.results: dict[str, Record] = {}
        self.dead: dict[str, Record] = {}
        _, topics = client_topics(settings)
        self._results_topic, self._topics = topics[0], topics
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = kafka.consumer(self.settings)
        await self._consumer.start()
        ends: dict[TopicPartition, int] = {}
        for topic in self._topics:
            ends.update(await end_offsets(self.settings, self._consumer, topic))
        self._consumer.assign(list(ends))
        for tp, end in ends.items():
            self._consumer.seek(tp, end)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def __aenter__(self) -> ResultWatcher:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _keep_result(self, value: bytes) -> Record | None:
        try:
            record = self.codec.decode_as("TaskResult", value)
        except DecodeError:
            return None
        if record["task_id"] in self.results:
            return None
        # Kept even when not wanted now: a later wait() may want it, and it is read only once.
        self.results[record["task_id"]] = record
        return record

    def _keep_dead(self, value: bytes) -> str | None:
        """The task id of a dead letter whose original record is a TaskRequested (the task stages')."""
        try:
            dead = self.codec.decode_as("DeadLetter", value)
            task = self.codec.decode_as("TaskRequested", dead["payload"])
        except DecodeError:
            return None
        tid = task["task_id"]
        if tid in self.dead:
            return None
        self.dead[tid] = dead
        return tid

    async def wait(self, task_ids: Iterable[str], timeout_s: float,
                   on_result: Callable[[Record], None] | None = None,
                   on_dead: OnDead | None = None) -> dict[str, Record]:
        """Wait until every id has a result or a dead letter, or the time is up; return the results that
        arrived (first per id). Dead-lettered ids are in `self.dead` and told to `on_dead`."""
        assert self._consumer is not None, "start() the watcher (or use it with `async with`) first"
        wanted = set(task_ids)
        deadline = time.monotonic() + timeout_s
        while not wanted.issubset(self.results.keys() | self.dead.keys()) and time.monotonic() < deadline:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, messages in batch.items():
                for m in messages:
                    if tp.topic == self._results_topic:
                        record = self._keep_result(m.value)
                        if record is not None and record["task_id"] in wanted and on_result is not None:
                            on_result(record)
                    elif (tid := self._keep_dead(m.value)) is not None and tid in wanted and on_dead is not None:
                        on_dead(tid, self.dead[tid])
        return {tid: self.results[tid] for tid in wanted if tid in self.results}


async def submit_and_wait(settings: Settings, codec: Codec, tasks: Iterable[Record], timeout_s: float, *,
                          on_sent: Callable[[Record], None] | None = None,
                          on_result: Callable[[Record], None] | None = None,
                          on_dead: OnDead | None = None) -> dict[str, Record]:
    """Submit tasks and return their results (those that arrived within `timeout_s`), keyed by task id.

    A task dead-lettered instead is not waited for: it is told to `on_dead` with its DeadLetter."""
    async with ResultWatcher(settings, codec) as watcher:
        ids = await submit_tasks(settings, codec, tasks, on_sent)
        return await watcher.wait(ids, timeout_s, on_result=on_result, on_dead=on_dead)
