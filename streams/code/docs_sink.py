"""The documentation sink: an aiokafka batch consumer of agent.results that keeps documentation results.

It reads in its own consumer group (`<app_id>-docs`), takes the ok results of documentation tasks
(metadata kind=documentation, from the code-change processor), writes them in one batch per poll to
PostgreSQL (L3) and then to the L2 vector tier (pgvector, or Weaviate when configured), and commits
the offsets after both writes. A crash re-reads the last batch; both tiers skip or replace what they have.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer

from schemas import Codec, DecodeError
from sinks.docs import ModuleDoc, index_docs, setup_docs, write_docs
from streams.memory.tiers import build_tiers
from streams.settings import Settings
from streams.topics import RESULTS

__all__ = ["doc_from_result", "run_docs_sink"]


def doc_from_result(result: dict[str, Any], scope: str) -> ModuleDoc | None:
    """The document in a TaskResult, or None when it is not an ok documentation result."""
    meta = result.get("metadata") or {}
    if meta.get("kind") != "documentation" or result["status"] != "ok" or not meta.get("module"):
        return None
    return ModuleDoc(result["task_id"], scope, meta.get("repository", ""), meta["module"], meta.get("path", ""),
                     meta.get("sha", ""), int(meta.get("committed_at") or 0), result["output"], result["model"])


async def run_docs_sink(settings: Settings, codec: Codec, *, idle_exit_s: float | None = None) -> int:
    """Consume until stopped (or until `idle_exit_s` pass with no record); return documents written to L3."""
    conn = await asyncio.to_thread(psycopg.connect, settings.postgres_dsn, autocommit=True)
    vectors = build_tiers(settings, {"vectors"})["vectors"]
    consumer = AIOKafkaConsumer(settings.topic(RESULTS), bootstrap_servers=settings.kafka_servers,
                                group_id=f"{settings.app_id}-docs", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    written = 0
    try:
        await asyncio.to_thread(setup_docs, conn)
        await asyncio.to_thread(vectors.setup)
        await consumer.start()
        last = time.monotonic()
        while idle_exit_s is None or time.monotonic() - last < idle_exit_s:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batch:
                continue
            last = time.monotonic()
            docs = []
            for messages in batch.values():
                for m in messages:
                    try:
                        doc = doc_from_result(codec.decode_as("TaskResult", m.value or b""), settings.topic_prefix)
                    except DecodeError:  # the task processor's results; anything else is not ours to judge
                        continue
                    if doc is not None:
                        docs.append(doc)
            written += await asyncio.to_thread(write_docs, conn, docs)
            await asyncio.to_thread(index_docs, vectors, docs)  # all of them: a re-read batch replaces its vectors
            await consumer.commit()
    finally:
        await consumer.stop()
        await asyncio.to_thread(conn.close)
        await asyncio.to_thread(vectors.close)
    return written
