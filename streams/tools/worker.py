"""Tools in a worker: the pool built from the settings, started with the worker (a server that cannot start
stops the worker, naming it), ToolCall events sent to agent.toolcalls, results kept in the PostgreSQL ledger."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaProducer

from agents.tools import ToolKit
from agents.tools.calls import Recorded, ToolExecutor
from agents.tools.pool import ServerStartError
from schemas import Codec
from schemas.events import Record
from sinks.tool_calls import ToolCallLedger
from streams.logs import get_logger
from streams.settings import Settings
from streams.tools.runtime import tool_config, tool_pool
from streams.topics import TOOLCALLS

__all__ = ["PgCallLedger", "serving_tools", "worker_tools"]

log = get_logger(__name__)


class PgCallLedger:
    """The executor's ledger over PostgreSQL (sinks/tool_calls.py), off the event loop."""

    def __init__(self, dsn: str) -> None:
        self._ledger = ToolCallLedger(dsn)

    async def get(self, call_id: str) -> Recorded | None:
        return await asyncio.to_thread(self._ledger.get, call_id)

    async def put(self, call: Recorded, task_id: str) -> None:
        await asyncio.to_thread(self._ledger.put, call, task_id)

    def close(self) -> None:
        self._ledger.close()


def worker_tools(settings: Settings) -> ToolKit | None:
    """The runner's tools (not started yet), or None when AGENTSTREAM_TOOLS_ENABLED=false."""
    if not settings.tools_enabled:
        return None
    config = tool_config(settings)  # a bad file fails here, at start
    executor = ToolExecutor(tool_pool(settings, config), PgCallLedger(settings.postgres_dsn), mode=settings.tools_mode,
                            record=settings.tools_record)
    return ToolKit(config, executor)


@contextlib.asynccontextmanager
async def serving_tools(settings: Settings, kit: ToolKit | None, producer: AIOKafkaProducer,
                        codec: Codec) -> AsyncIterator[None]:
    """The pool started (every server, or the first failure raised) and ToolCall events sent, for the block."""
    if kit is None:
        yield
        return
    topic = settings.topic(TOOLCALLS)

    async def emit(event: Record) -> None:
        await producer.send_and_wait(topic, codec.encode("ToolCall", event), key=event["task_id"].encode())

    kit.executor.emit = emit
    try:
        await kit.executor.pool.start()
    except ServerStartError as exc:  # the worker stops: say which server, and its command, where it is read
        log.error("tool server did not start: the worker stops", stage="tools", server=exc.server, error=str(exc))
        raise
    log.info("tool servers started", stage="tools", servers=kit.executor.pool.names, mode=settings.tools_mode)
    try:
        yield
    finally:
        await kit.executor.pool.close()
        if isinstance(kit.executor.ledger, PgCallLedger):
            kit.executor.ledger.close()
        log.info("tool servers stopped", stage="tools", called=kit.executor.called, reused=kit.executor.reused)
