"""Long-running processes: run their loops until SIGTERM/SIGINT, start clients while Kafka comes up,
stop clients within a bound.

Every loop is `async (stop: asyncio.Event) -> None` and returns once `stop` is set; a loop that raises
stops the others, then the process (with the error). The worker and the sinks use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka.errors import KafkaError

from streams.kafka import KafkaUnavailable
from streams.logs import get_logger

__all__ = ["CRASH_EXIT_CODE", "FAULT_POINTS", "Loop", "close", "crash_point", "print_tasks", "run_all",
           "run_until_signalled", "started"]

log = get_logger(__name__)

Loop = Callable[[asyncio.Event], Awaitable[Any]]
T = TypeVar("T")


def run_until_signalled(main: Loop) -> None:
    """`main(stop)` in a new event loop, `stop` set by SIGTERM or SIGINT. Blocks. SIGUSR1 prints where
    each of the process's tasks is waiting (`kill -USR1 PID`: what is a stuck worker doing?)."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            loop.add_signal_handler(signal.SIGUSR1, print_tasks)
        await main(stop)

    asyncio.run(run())


def print_tasks() -> None:
    """Every asyncio task of this process with the line it waits on, then every thread's stack (a tier
    call runs in a thread), to stderr (the process log)."""
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    sys.stderr.write(f"agentstream: {len(tasks)} tasks at {time.strftime('%H:%M:%S')}\n")
    for task in tasks:
        chain, awaited = [], task.get_coro()
        while awaited is not None:  # down the chain of awaits, to the innermost one
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                chain.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno})")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        sys.stderr.write(f"  {task.get_name()}: {' -> '.join(chain[-5:]) or 'done'}\n")
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():  # what the threads (tier calls, to_thread) run
        sys.stderr.write(f"  thread {names.get(ident, ident)}:\n")
        sys.stderr.write("".join("    " + line for line in traceback.format_stack(frame, limit=4)))
    sys.stderr.flush()


async def run_all(loops: list[Loop], stop: asyncio.Event) -> None:
    """Run `loops` until `stop` is set and all have returned; the first that raises stops the rest, then is raised."""
    jobs = [asyncio.create_task(loop(stop)) for loop in loops]
    done, _ = await asyncio.wait(jobs, return_when=asyncio.FIRST_EXCEPTION)
    stop.set()
    await asyncio.gather(*jobs, return_exceptions=True)
    for job in [*done, *jobs]:  # the first to fail first
        if job.done() and not job.cancelled() and job.exception() is not None:
            raise job.exception()  # type: ignore[misc]


async def started(make: Callable[[], T], timeout_s: float, what: str) -> T:
    """A client made by `make()` and started; made and started again while Kafka is unreachable or a
    broker is down, up to `timeout_s`: a worker started while a broker restarts waits for the cluster
    rather than exiting."""
    deadline = time.monotonic() + timeout_s
    delay = 0.5
    while True:
        client = make()
        try:
            await client.start()
            return client
        except (KafkaUnavailable, KafkaError) as exc:
            retriable = isinstance(exc, KafkaUnavailable) or getattr(exc, "retriable", False)
            with contextlib.suppress(Exception):  # consumers and producers stop, admin clients close
                await (client.stop() if hasattr(client, "stop") else client.close())
            if not retriable or time.monotonic() + delay > deadline:
                raise
            log.warning("Kafka not ready; starting again", stage="startup", client=what, error=str(exc)[:200])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def close(client: Any, what: str, timeout_s: float = 15.0) -> None:
    """`client.stop()` within `timeout_s`: with a broker down, leaving a group or flushing a producer
    can wait for its request timeout; what is not flushed by then was never committed either."""
    try:
        await asyncio.wait_for(client.stop(), timeout=timeout_s)
    except TimeoutError:
        log.warning("client not stopped in time; left to the broker's timeouts", stage="shutdown", client=what,
                    seconds=timeout_s)


# Where a crash test may arm a worker or a sink process to die (AGENTSTREAM_FAULT_POINT).
FAULT_POINTS = {
    "task-after-results": "a task's outputs and result are on the broker; its done mark is not written",
    "task-after-answer": "a task's first model call is answered and its answer queued for the ledger",
    "sink-after-write": "a sink batch is written to every tier; its offsets are not committed",
}
CRASH_EXIT_CODE = 86


def crash_point(armed: str, point: str) -> None:
    """Exit at once, no clean-up, flushing nothing (like SIGKILL), when `point` is the armed one."""
    if armed == point:
        sys.stderr.write(f"agentstream: fault point {point!r} reached: exiting ({FAULT_POINTS[point]})\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
