"""`agentstream docs sink`: the documentation results on agent.results, kept by a sink processor.

The processor (streams/memory/processor.py) reads agent.results in its own group (`<app_id>-sink-docs`)
and hands the TaskResults to the docs tier (sinks/docs.py: PostgreSQL L3, then the L2 vector tier,
pgvector or Weaviate), committing after both took the batch: the same backoff while a store is down,
dead letters and rebalance handling as the memory and archive sinks.
"""

from __future__ import annotations

import asyncio
import time

from schemas import Codec
from sinks.base import MemoryRecord
from sinks.docs import DocsTier
from streams.code.signing import signing_key
from streams.memory.processor import SinkProcessor
from streams.memory.tiers import build_tiers
from streams.settings import Settings
from streams.topics import RESULTS

__all__ = ["build_docs_processor", "run_docs_sink"]

_BATCH = 500


def _results(record: MemoryRecord) -> tuple[str, ...]:
    return ("docs",) if record.event_type == "TaskResult" else ()


def build_docs_processor(settings: Settings, codec: Codec) -> tuple[SinkProcessor, DocsTier]:
    """The processor and its one tier (whose `stored` counts the documents written to L3)."""
    tier = DocsTier(settings.postgres_dsn, settings.topic_prefix, build_tiers(settings, {"vectors"})["vectors"],
                    signing_key(settings))
    processor = SinkProcessor(settings, codec, "docs", [settings.topic(RESULTS)], {"docs": tier}, _results,
                              max_records=_BATCH, max_wait_s=settings.sink_batch_wait_s)
    return processor, tier


async def run_docs_sink(settings: Settings, codec: Codec, *, idle_exit_s: float | None = None) -> int:
    """Consume until stopped (or until `idle_exit_s` pass with no record); return documents written to L3."""
    processor, tier = build_docs_processor(settings, codec)
    stop = asyncio.Event()
    job = asyncio.create_task(processor.run(stop))
    while not job.done():
        await asyncio.wait({job}, timeout=0.2)
        if idle_exit_s is not None and time.monotonic() - processor.last_active >= idle_exit_s:
            stop.set()  # the batch in hand is finished first
    job.result()  # raises what ended it early
    return tier.stored
