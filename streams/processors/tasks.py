"""The task stage: agent.tasks -> a swarm run (in the tenant's partition) -> agent.outputs + agent.results.

A plain aiokafka consumer group, not Faust: Faust commits past records its concurrent actors never
finished or never received across a rebalance (docs/delivery.md). Here
every offset is committed only once its task is finished, each partition up to its lowest task
still running (`OffsetTracker`), while many tasks run at once.

One group (`<app id>-tasks`) reads agent.tasks and agent.tasks.by-tenant with the range assignor, so
partition p of both topics, and of the ledgers, belongs to one worker: the tenant's budget is local.
A task keyed by its tenant and in its tenant's partition runs at once; any other is forwarded to
agent.tasks.by-tenant keyed by tenant (its offset finishes when the broker has the copy). Before a
task runs, the ledger says whether it was answered already (or is running here): then it is skipped,
not run or charged again. A task's offset finishes after its outputs, result and ledger writes are
on the broker. Records that cannot be decoded or processed become dead letters and count as finished.

Flow: fetched records wait in a bounded buffer per partition (full: the partition is paused, and
`getmany` is still called so the group keeps us); on revocation, and on SIGTERM, tasks in flight get
`drain_timeout_s` to finish, what finished is committed, the rest is cancelled uncommitted for the
next owner, and buffered records are dropped.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from agents.runner import TaskRunner
from schemas import Codec
from schemas.events import DEFAULT_TENANT, TENANT_NAME, normal_tenant, task_identity, tenant_key_of, tenant_of
from streams import kafka
from streams.lifecycle import close, crash_point, started
from streams.logs import get_logger
from streams.observability.telemetry import telemetry
from streams.processors.guard import Guard, Incoming, topic_sender
from streams.processors.ledger import LedgerSpendStore, TaskLedger, tenant_partition
from streams.processors.offsets import OffsetTracker
from streams.processors.ordered import RebalanceHooks, is_unavailable
from streams.settings import Settings
from streams.topics import (
    DEADLETTERS,
    OUTPUTS,
    RESULTS,
    TASKS,
    TASKS_BY_TENANT,
    tenant_of_topic,
    tenant_result_topic,
    tenant_task_topic,
)

__all__ = ["TaskStage"]

log = get_logger(__name__)


class TaskStage:
    """Runs the tasks of the partitions this worker owns, at most `worker_concurrency` at once."""

    def __init__(self, settings: Settings, runner: TaskRunner, codec: Codec) -> None:
        self.settings, self.runner, self.codec = settings, runner, codec
        self.tasks_topic, self.by_tenant_topic = settings.topic(TASKS), settings.topic(TASKS_BY_TENANT)
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.buffer_limit = max(64, 4 * settings.worker_concurrency)  # per partition, then it is paused
        self._buffers: dict[TopicPartition, deque[Any]] = {}
        self._running: dict[asyncio.Task[None], tuple[TopicPartition, int]] = {}
        self._running_ids: set[str] = set()
        self._owned: set[TopicPartition] = set()  # assigned and their ledger read: their tasks may start
        self._paused: set[TopicPartition] = set()
        self._catching_up: asyncio.Task[None] | None = None
        self._finishing: set[asyncio.Task[Any]] = set()  # sending their results: not cancelled by a drain
        self._abandoning: set[asyncio.Task[Any]] = set()  # cancelled by a drain: must never send a result
        self._wake = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.ledger: TaskLedger | None = None
        self.guard: Guard | None = None
        self.answered = self.skipped = self.forwarded = self.dead = self.abandoned = 0

    @property
    def group_id(self) -> str:
        return f"{self.settings.app_id}-tasks"

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then drain, commit and leave the group."""
        s = self.settings
        self.producer = await started(lambda: kafka.producer(s), s.startup_timeout_s, "tasks-producer")
        dead_letters = s.topic(DEADLETTERS)
        self.guard = Guard(self.codec, topic_sender(self.producer, dead_letters))
        self.ledger = TaskLedger(s, self.producer)
        await self.ledger.start()
        self.runner.ledger.store = LedgerSpendStore(self.ledger)

        def consumer() -> AIOKafkaConsumer:
            made = kafka.consumer(
                s, group_id=self.group_id, auto_offset_reset="earliest",
                partition_assignment_strategy=(RangePartitionAssignor,),
                session_timeout_ms=int(s.session_timeout_s * 1000),
                heartbeat_interval_ms=int(s.session_timeout_s * 250),
                # the group waits for our revocation drain: give it that plus a session
                rebalance_timeout_ms=int((s.drain_timeout_s + s.session_timeout_s) * 1000),
                fetch_max_wait_ms=20, **({"metadata_max_age_ms": 5000} if s.tenant_topics else {}))
            hooks = RebalanceHooks(self.revoke, self.assign)
            if s.tenant_topics:  # every tenant's own task topic too, those added later included
                made.subscribe(pattern=self._topics_pattern(), listener=hooks)
            else:
                made.subscribe([self.tasks_topic, self.by_tenant_topic], listener=hooks)
            self.consumer = made  # the listener may run (and commit) before start() returns
            return made

        self.consumer = await started(consumer, s.startup_timeout_s, "tasks-consumer")
        log.info("task stage started", stage="tasks", group=self.group_id, concurrency=s.worker_concurrency)
        loops = [asyncio.create_task(self._fetch()), asyncio.create_task(self._dispatch()),
                 asyncio.create_task(self._commit_every())]
        stopping = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([stopping, *loops], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping:
                    task.result()  # a loop that ended on its own crashed: raise it
        finally:
            stopping.cancel()
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._shut_down()

    def _topics_pattern(self) -> str:
        """The shared task topics and every tenant's own one (`agent.tasks.tenant.NAME`)."""
        tenants = re.escape(tenant_task_topic(self.settings, "")) + TENANT_NAME.pattern.strip("^$")
        return f"^({re.escape(self.tasks_topic)}|{re.escape(self.by_tenant_topic)}|{tenants})$"

    async def _shut_down(self) -> None:
        assert self.consumer is not None and self.producer is not None and self.ledger is not None
        if self._catching_up is not None:
            self._catching_up.cancel()
        owned = set(self._owned)
        self._owned.clear()
        self._buffers.clear()
        await self._drain(set(self._running))
        await self._commit(owned)
        await close(self.consumer, "tasks-consumer")  # leaves the group: the partitions move at once
        await self.ledger.stop()
        await close(self.producer, "tasks-producer")
        log.info("task stage stopped", stage="tasks", answered=self.answered, skipped=self.skipped,
                 forwarded=self.forwarded, dead_letters=self.dead, abandoned=self.abandoned)

    # -- the group -------------------------------------------------------------------------

    async def assign(self, assigned: set[TopicPartition]) -> None:
        """Read the ledger partitions of the new assignment to their end, then let their tasks start.
        A ledger that cannot be read now (a broker down) is tried again in the background; the tasks
        of those partitions wait for it (fetched, never started)."""
        if not await self._catch_up(assigned):
            self._catching_up = asyncio.create_task(self._catch_up_later(assigned))
            return
        self._own(assigned)

    async def _catch_up(self, assigned: set[TopicPartition]) -> bool:
        assert self.ledger is not None
        try:
            await self.ledger.catch_up({tp.partition for tp in assigned})
            return True
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("ledger not read; the partitions' tasks wait for it", stage="tasks", error=str(exc)[:200])
            return False

    async def _catch_up_later(self, assigned: set[TopicPartition]) -> None:
        await asyncio.sleep(2.0)
        while not await self._catch_up(assigned):  # noqa: ASYNC110 (tried again on a timer, not waiting for an event)
            await asyncio.sleep(2.0)
        self._own(assigned)

    def _own(self, assigned: set[TopicPartition]) -> None:
        self._owned = set(assigned)
        self._paused &= self._owned
        log.info("partitions assigned", stage="tasks", partitions=sorted(f"{tp.topic}:{tp.partition}"
                                                                         for tp in assigned))
        self._wake.set()

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        """Stop taking records of `revoked`, let their tasks finish within the drain deadline, commit
        what finished, abandon the rest uncommitted (the next owner runs them), drop their buffers."""
        if self._catching_up is not None:  # the assignment it was reading for is over
            self._catching_up.cancel()
            self._catching_up = None
        self._owned -= revoked
        for tp in revoked:
            self._buffers.pop(tp, None)
            self._paused.discard(tp)
        started = time.monotonic()
        mine = {t for t, (tp, _) in self._running.items() if tp in revoked}
        abandoned = await self._drain(mine)
        assert self.ledger is not None
        for p in {tp.partition for tp in revoked}:  # the next owner reads every charge made here
            try:
                await self.ledger.flush(p)
            except KafkaError as exc:
                log.warning("ledger flush failed on revocation", stage="tasks", partition=p, error=str(exc)[:200])
        await self._commit(revoked)
        for tp in revoked:
            self.tracker.forget(tp)
        if revoked:
            log.info("partitions revoked", stage="tasks", in_flight=len(mine), abandoned=abandoned,
                     seconds=round(time.monotonic() - started, 2))

    async def _drain(self, tasks: set[asyncio.Task[None]]) -> int:
        """Wait for `tasks` up to the drain deadline; cancel the rest. How many were cancelled.

        A task already sending its result is not cancelled: cut between its result and its done mark,
        it would be answered again by the next owner. It gets up to half a session more (the group
        waits the drain deadline plus a session) for those writes."""
        if not tasks:
            return 0
        _, late = await asyncio.wait(tasks, timeout=self.settings.drain_timeout_s)
        finishing = late & self._finishing
        if finishing:
            _, still = await asyncio.wait(finishing, timeout=self.settings.session_timeout_s / 2)
            late = (late - finishing) | still
        for task in late:
            self._abandoning.add(task)  # checked before a result is sent: a cancellation can be lost
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=5.0)
            log.warning("tasks abandoned uncommitted at the drain deadline", stage="tasks", count=len(late))
        return len(late)

    # -- fetching, starting, finishing ----------------------------------------------------

    async def _fetch(self) -> None:
        """Fetch into the buffers; pause a partition whose buffer is full, resume it once half empty."""
        assert self.consumer is not None
        while True:
            got = await self.consumer.getmany(timeout_ms=200, max_records=self.buffer_limit)
            assignment = self.consumer.assignment()
            for tp, messages in got.items():
                if tp in assignment:
                    self._buffers.setdefault(tp, deque()).extend(messages)
            self._flow()
            if got:
                self._wake.set()

    def _flow(self) -> None:
        assert self.consumer is not None
        assignment = self.consumer.assignment()
        full = {tp for tp, b in self._buffers.items() if len(b) >= self.buffer_limit and tp in assignment}
        if full - self._paused:
            self.consumer.pause(*(full - self._paused))
        low = {tp for tp in self._paused if len(self._buffers.get(tp, ())) < self.buffer_limit // 2}
        low &= assignment
        if low:
            self.consumer.resume(*low)
        self._paused = (self._paused | full) - low

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._start_what_fits()

    def _start_what_fits(self) -> None:
        """Start buffered records, one partition after another, while the pool has room."""
        limit = self.settings.worker_concurrency
        while len(self._running) < limit:
            started = False
            for tp, buffer in list(self._buffers.items()):
                if len(self._running) >= limit:
                    break
                if tp not in self._owned or not buffer:
                    continue
                message = buffer.popleft()
                self.tracker.take(tp, message.offset)
                task = asyncio.create_task(telemetry.consume(message, self._process(message), self.group_id))
                self._running[task] = (tp, message.offset)
                task.add_done_callback(self._finished)
                started = True
            if not started:
                break
        self._flow()

    def _finished(self, task: asyncio.Task[None]) -> None:
        tp, offset = self._running.pop(task)
        self._abandoning.discard(task)
        if task.cancelled():
            self.abandoned += 1  # not finished: committed by no one, run by the next owner
        elif task.exception() is not None:  # the broker refused a result or ledger write: hold the partition
            log.error("task not finished: its partition is not committed past it", stage="tasks",
                      topic=tp.topic, partition=tp.partition, offset=offset, error=repr(task.exception())[:300])
        else:
            self.tracker.finish(tp, offset)
        self._wake.set()

    # -- one record ------------------------------------------------------------------------

    async def _process(self, message: Any) -> None:
        assert self.guard is not None
        task = await self.guard.decode("TaskRequested", Incoming.of(message), "decode")
        if task is None:
            self.dead += 1
            return
        claimed = task.get("tenant")
        try:
            task["tenant"] = self._tenant(message.topic, claimed)
        except ValueError as exc:
            await self._dead("tenant", message, exc)
            return
        same = task["tenant"] == (claimed or DEFAULT_TENANT)  # no tenant at all is the default one
        value = message.value if same else self.codec.encode("TaskRequested", task)
        tenant_key = tenant_key_of(task)
        own = tenant_partition(tenant_key, self.settings.partitions)
        if message.key == tenant_key and message.partition == own and value is message.value:
            await self._handle(message, task, own)  # already in its tenant's partition: no second hop
            return
        assert self.producer is not None
        try:
            await self.producer.send_and_wait(self.by_tenant_topic, value, key=tenant_key, partition=own)
            self.forwarded += 1
        except KafkaError as exc:
            await self._dead("route", message, exc)

    def _tenant(self, topic: str, claimed: str | None) -> str:
        """Whose task this is: on a tenant's own topic that tenant, whatever the record says (only its principal
        may write there); elsewhere the record's tenant, normalised (ValueError: not a tenant name)."""
        owner = tenant_of_topic(self.settings, topic)
        if owner is None:
            return normal_tenant(claimed)
        if claimed and claimed != owner:
            log.warning("task claimed another tenant: charged to its topic's", stage="tasks", topic=topic,
                        claimed=str(claimed)[:64], tenant=owner)
        return owner

    async def _handle(self, message: Any, task: dict[str, Any], partition: int) -> None:
        assert self.producer is not None and self.ledger is not None
        task_id, identity = task["task_id"], task_identity(task)  # the ledger knows a task by its identity
        if identity in self._running_ids or self.ledger.is_done(identity):
            self.skipped += 1
            log.info("task already done: skipped", stage="process", task_id=task_id,
                     running=identity in self._running_ids)
            return
        self._running_ids.add(identity)
        try:
            attempt = self.ledger.begin(partition, identity)
            try:
                spend_key = self.runner.ledger.key(tenant_of(task))
                me = asyncio.current_task()
                cache = self.ledger.step_cache(partition, identity, spend_key, lambda: me in self._abandoning)
                run = await self.runner.run(task, cache=cache)
                run.result["metadata"]["attempt"] = str(attempt)
                if me in self._abandoning:
                    # Cancelled by a drain, but the cancellation was lost on its way (asyncio.wait_for on
                    # Python 3.11 returns a result that arrives with the cancellation): the partition is
                    # someone else's now, so no result from here.
                    raise asyncio.CancelledError
                assert me is not None
                self._finishing.add(me)
                key = task_id.encode()
                sent = [await self.producer.send(self.settings.topic(OUTPUTS), self.codec.encode("AgentOutput", o),
                                                 key=key) for o in run.outputs]
                result = self.codec.encode("TaskResult", run.result)
                sent.append(await self.producer.send(self.settings.topic(RESULTS), result, key=key))
                if (own_results := self._tenant_results(task)) is not None:
                    sent.append(await self.producer.send(own_results, result, key=key))
                await asyncio.gather(*sent)
                crash_point(self.settings.fault_point, "task-after-results")
            except Exception as exc:  # a bug or a bad record must not stop the stage
                if is_unavailable(exc):
                    raise  # the broker, not the task: left unfinished, run again by whoever owns it next
                await self._dead("process", message, exc)
                await self.ledger.flush(partition)
                self.ledger.forget(partition, identity)
                return
            self.ledger.end(partition, identity, run.result["created_at"], attempt)
            await self.ledger.flush(partition)  # spend, done mark: on the broker before the offset may move
            self.ledger.forget(partition, identity)
        finally:
            self._running_ids.discard(identity)
            self._finishing.discard(asyncio.current_task())  # type: ignore[arg-type]
        self.answered += 1
        telemetry.task_done(task, run.result)
        r = run.result
        log.info("task done", stage="process", task_id=task_id, status=r["status"], attempt=attempt,
                 pattern=r["metadata"].get("pattern"), steps=r["steps"], latency_ms=round(r["latency_ms"], 1))

    def _tenant_results(self, task: dict[str, Any]) -> str | None:
        """The tenant's own result topic, when it has one (its task topic is among those followed)."""
        if not self.settings.tenant_topics or self.consumer is None:
            return None
        tenant = tenant_of(task)
        has_own = tenant_task_topic(self.settings, tenant) in self.consumer.subscription()
        return tenant_result_topic(self.settings, tenant) if has_own else None

    async def _dead(self, stage: str, message: Any, error: BaseException | str) -> None:
        assert self.guard is not None
        self.dead += 1
        await self.guard.dead(stage, Incoming.of(message), error)

    async def _commit_every(self) -> None:
        while True:
            await asyncio.sleep(self.settings.task_commit_interval_s)
            await self._commit(self._owned)
            assert self.ledger is not None
            self.ledger.sweep()

    async def _commit(self, tps: set[TopicPartition]) -> None:
        """Commit each of `tps` up to its lowest unfinished offset (only the ones that moved)."""
        assert self.consumer is not None
        offsets = self.tracker.to_commit(tps)
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # the group moved on: the next owner starts from the last commit
            log.warning("commit failed", stage="tasks", error=str(exc)[:200])
            return
        self.tracker.committed(offsets)
