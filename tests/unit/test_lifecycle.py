"""The process lifecycle helpers that need no server: the stuck-process view and the fault points."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from streams.lifecycle import CRASH_EXIT_CODE, crash_point, print_tasks


async def test_print_tasks_names_each_task_and_the_innermost_line_it_waits_on(capsys) -> None:
    async def waiting_for_a_tier() -> None:
        await asyncio.sleep(30)

    task = asyncio.create_task(waiting_for_a_tier(), name="sink-memory")
    await asyncio.sleep(0)
    try:
        print_tasks()
    finally:
        task.cancel()
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.strip().startswith("sink-memory:"))
    assert "waiting_for_a_tier (test_lifecycle.py:" in line and line.rstrip().endswith(")")
    assert "sleep (tasks.py:" in line  # down to asyncio's own await
    assert "  thread MainThread:" in err and "print_tasks" in err  # and each thread's stack


def test_a_fault_point_exits_at_once_only_when_armed() -> None:
    crash_point("", "task-after-results")  # not armed: nothing happens
    crash_point("sink-after-write", "task-after-results")
    code = ("from streams.lifecycle import crash_point\n"
            "crash_point('task-after-results', 'task-after-results')\nprint('survived')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == CRASH_EXIT_CODE and "survived" not in done.stdout
    assert "fault point 'task-after-results' reached" in done.stderr
