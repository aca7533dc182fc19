"""Consumer lag, the way kafka_exporter reports it: `kafka_consumergroup_lag{consumergroup,topic,partition}`,
the records of each partition of a group's topics past what the group has committed.

Every consumer group made by streams/kafka.py is registered here (`watch`) when it subscribes; the
monitor reads each group's committed offsets and the topics' end offsets from the brokers every
`lag_interval_s`, on an event loop of its own in a thread of its own, so the pipeline's loop never
waits for it. It reports every partition of the group (not only this process's share), so it is
right even while the group's other members, or all of them, are down. With `discover` it also finds
every group named `<prefix>...` that has committed offsets (on the given topics, if any): the dashboard
reads all the groups of an app so, while its workers are down too.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.logs import get_logger
from streams.settings import Settings

__all__ = ["LagMonitor", "read_lag", "watch", "watched"]

log = get_logger(__name__)

Lag = dict[tuple[str, str, int], int]  # (group, topic, partition) -> lag

_watched: dict[str, set[str]] = {}
_lock = threading.Lock()


def watch(group: str | None, topics: Iterable[str]) -> None:
    """Report the lag of `group` on `topics` (called by streams/kafka.py for each group consumer)."""
    if not group:
        return
    with _lock:
        _watched.setdefault(group, set()).update(topics)


def watched() -> dict[str, set[str]]:
    with _lock:
        return {g: set(t) for g, t in _watched.items()}


async def _groups_with_prefix(admin: AIOKafkaAdminClient, prefix: str,
                              topics: set[str] | None) -> dict[str, set[str]]:
    """Groups named `prefix...`, each with those of `topics` (None: any) it has committed offsets for."""
    found: dict[str, set[str]] = {}
    for group in await admin.list_consumer_groups():
        name = group[0]
        if not name.startswith(prefix):
            continue
        mine = {tp.topic for tp in await admin.list_consumer_group_offsets(name)}
        if topics is not None:
            mine &= topics
        if mine:
            found[name] = mine
    return found


async def read_lag(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, groups: dict[str, set[str]]) -> Lag:
    """The lag of every partition of each group's topics (a partition the group never committed counts
    from the start of the log, where our groups begin)."""
    topics = sorted({t for ts in groups.values() for t in ts})
    if not topics:
        return {}
    partitions: list[TopicPartition] = []
    for described in await admin.describe_topics(topics):
        if described.get("error_code", 0) == 0:
            partitions += [TopicPartition(described["topic"], p["partition"]) for p in described["partitions"]]
    if not partitions:
        return {}
    ends = await consumer.end_offsets(partitions)
    starts: dict[TopicPartition, int] | None = None
    lag: Lag = {}
    for group, group_topics in groups.items():
        committed = await admin.list_consumer_group_offsets(group)
        for tp in partitions:
            if tp.topic not in group_topics:
                continue
            at = committed.get(tp)
            position = at.offset if at is not None and at.offset >= 0 else None
            if position is None:
                if starts is None:
                    starts = await consumer.beginning_offsets(partitions)
                position = starts[tp]
            lag[(group, tp.topic, tp.partition)] = max(0, ends[tp] - position)
    return lag


class LagMonitor:
    """Reads the lag of the watched groups (and of discovered ones) every `interval_s`, in a thread."""

    def __init__(self, settings: Settings, on_lag: Callable[[Lag], None], *,
                 discover: tuple[str, set[str] | None] | None = None) -> None:
        self.settings, self.on_lag, self.discover = settings, on_lag, discover
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def start(self) -> LagMonitor:
        self._thread = threading.Thread(target=self._main, name="agentstream-lag", daemon=True)
        self._thread.start()
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except RuntimeError as exc:
            # A process that exits without stopping us (a worker refusing its config) shuts the thread pools
            # down under this daemon thread: its next lookup fails. Nothing is wrong then; otherwise say it.
            if not (self._stop.is_set() or sys.is_finalizing() or "after shutdown" in str(exc)):
                raise

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop has ended already
                self._loop.call_soon_threadsafe(self._wake.set)
        if self._thread is not None:
            self._thread.join(timeout_s)

    async def _run(self) -> None:
        from streams import kafka  # here: kafka.py registers its consumers with this module

        admin: AIOKafkaAdminClient | None = None
        consumer: AIOKafkaConsumer | None = None
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        while not self._stop.is_set():
            try:
                if admin is None or consumer is None:
                    admin, consumer = kafka.admin(self.settings), kafka.consumer(self.settings)
                    await admin.start()
                    await consumer.start()
                groups = watched()
                if self.discover is not None:
                    for group, topics in (await _groups_with_prefix(admin, *self.discover)).items():
                        groups.setdefault(group, set()).update(topics)
                self.on_lag(await read_lag(admin, consumer, groups))
            except (KafkaError, OSError, TimeoutError) as exc:  # brokers away: tried again next time
                log.warning("consumer lag not read", stage="lag", error=str(exc)[:200])
            except Exception as exc:  # reading lag must never end the process
                log.warning("consumer lag not read", stage="lag", error=repr(exc)[:200])
                await _closed(admin, consumer)
                admin = consumer = None
            # Woken by `stop` through the loop, not by a thread of the pool: at exit the interpreter shuts the
            # pools down before `stop` runs, and the clients would be left unclosed.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.lag_interval_s)
        await _closed(admin, consumer)


async def _closed(admin: AIOKafkaAdminClient | None, consumer: AIOKafkaConsumer | None) -> None:
    with contextlib.suppress(Exception):
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()
