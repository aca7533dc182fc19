"""`agentstream sinks`: the memory and archive sink processors and the predictive-context prefetcher.

- memory: agent.outputs, agent.results, prompt.outcomes, code.changes -> L1/L2/L3 by the routing file.
- archive: every project topic -> L4 (Avro files), in larger batches (by size and time).
- prefetch: agent.tasks -> each task's memories are searched as soon as it is queued, so the
  result is in L1 when the worker reaches it (the worker's own search is then a cache hit).
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents.clock import now_ms
from agents.redaction import redact_task
from schemas import Codec, DecodeError, default_codec
from sinks.base import MemoryRecord
from sinks.retrieval import Retriever
from streams import kafka
from streams.admin import ensure_topics
from streams.lifecycle import Loop, run_all, run_until_signalled
from streams.logs import get_logger
from streams.memory.processor import SinkProcessor
from streams.memory.tiers import build_archive, build_retriever, build_tiers, router
from streams.observability import runtime as observability
from streams.settings import Settings
from streams.topics import ALL_TOPICS, CODE_CHANGES, OUTPUTS, PROMPT_OUTCOMES, RESULTS, TASKS

__all__ = ["MEMORY_TOPICS", "build_processors", "prefetch", "run_sinks", "serve"]

log = get_logger(__name__)

MEMORY_TOPICS = (OUTPUTS, RESULTS, PROMPT_OUTCOMES, CODE_CHANGES)


def build_processors(settings: Settings, codec: Codec) -> list[SinkProcessor]:
    """The memory processor (L1-L3, by the routing policy) and the archive processor (L4, everything)."""
    policy = router(settings)
    memory = SinkProcessor(
        settings, codec, "memory", [settings.topic(t) for t in MEMORY_TOPICS], build_tiers(settings, policy.tiers),
        lambda r: policy.tiers_for(r.event_type), max_records=settings.sink_batch_records,
        max_wait_s=settings.sink_batch_wait_s)
    archive = SinkProcessor(
        settings, codec, "archive", [settings.topic(t) for t in ALL_TOPICS], {"archive": build_archive(settings)},
        _everything, max_records=settings.archive_batch_records, max_bytes=settings.archive_batch_bytes,
        max_wait_s=settings.archive_batch_wait_s, keep_undecodable=True)
    return [memory, archive]


def _everything(_record: MemoryRecord) -> tuple[str, ...]:
    return ("archive",)


async def prefetch(settings: Settings, codec: Codec, retriever: Retriever, stop: asyncio.Event) -> None:
    """Warm L1 with the memories of each queued task before a worker calls its agent."""
    # A new group starts at the beginning, but tasks older than the cache TTL are skipped unread.
    consumer = kafka.consumer(settings, settings.topic(TASKS), group_id=f"{settings.app_id}-sink-prefetch",
                              auto_offset_reset="earliest", enable_auto_commit=True)
    await consumer.start()
    try:
        while not stop.is_set():
            # Small batches: the first tasks of a burst are searched while the worker is still decoding them.
            got = await consumer.getmany(timeout_ms=300, max_records=32)
            tasks = [task for messages in got.values() for m in messages if (task := _fresh_task(settings, codec, m))]
            if not tasks:
                continue
            try:
                await asyncio.to_thread(retriever.prefetch, tasks, settings.memory_context_k)
            except Exception as exc:  # prefetching is best effort: the worker searches anyway
                log.warning("prefetch failed", stage="prefetch", error=str(exc)[:200])
    finally:
        await consumer.stop()


def _fresh_task(settings: Settings, codec: Codec, message: Any) -> dict[str, Any] | None:
    """The queued task as the worker will search for it (redacted), or None: too old (a cached search
    would have expired by now anyway) or undecodable (the task processor dead-letters it)."""
    if message.timestamp < now_ms() - settings.memory_cache_ttl_s * 1000:
        return None
    try:
        return redact_task(codec.decode_as("TaskRequested", message.value))
    except DecodeError:
        return None


async def serve(settings: Settings, stop: asyncio.Event, with_prefetch: bool = True,
                with_writers: bool = True) -> list[SinkProcessor]:
    """Run the processors (and the prefetcher) until `stop` is set; return them (for their counters)."""
    await ensure_topics(settings, timeout_s=settings.startup_timeout_s, wait_for_kafka=True)
    codec = default_codec()
    processors = build_processors(settings, codec) if with_writers else []
    loops: list[Loop] = [p.run for p in processors]
    if with_prefetch and settings.memory_context_k > 0:
        retriever = build_retriever(settings)
        loops.append(lambda stop: prefetch(settings, codec, retriever, stop))
    await run_all(loops, stop)
    return processors


def run_sinks(settings: Settings, with_prefetch: bool = True, with_writers: bool = True) -> None:
    """Blocks until SIGTERM/SIGINT."""

    log.info("sinks starting", stage="sinks", kafka=settings.kafka_servers, writers=with_writers,
             prefetch=with_prefetch)
    observability.start(settings, "sinks")
    run_until_signalled(lambda stop: serve(settings, stop, with_prefetch, with_writers))
