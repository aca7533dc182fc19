"""Child processes: the one way to start one (a worker, the sinks, any `agentstream` command, a local
server) and to stop it.

A child runs in a session of its own (a Ctrl-C at the terminal is not sent to it; its owner stops it),
with stdin closed and its output appended to a log file. agentstream's own commands get exactly the
given settings through their environment, so a run isolated with `Settings.isolated` stays isolated.
Used by the demos, the benches, replay and the tests; the local stack spawns its servers here too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from streams.settings import Settings

__all__ = ["running", "spawn", "start_command", "start_sinks", "start_worker", "stop"]

Child = subprocess.Popen[bytes]


def spawn(cmd: Sequence[str], log_path: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None) -> Child:
    """Start `cmd` in its own session, stdin closed, output appended to `log_path` after a header line."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n=== agentstream {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n".encode())
        log.flush()
        return subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=cwd, env=env, start_new_session=True)


def start_command(settings: Settings, *args: str, log_name: str) -> Child:
    """`agentstream ARGS` as a child with exactly these settings (JSON logs), output in the data folder.

    A setting that is unset here is unset in the child too: the parent's environment may set it (a replay
    without a model override must not hand the replaying shell's AGENTSTREAM_MODEL to its worker)."""
    ours = {field.alias for field in type(settings).model_fields.values()}
    inherited = {k: v for k, v in os.environ.items() if k not in ours}
    env = {**inherited, **settings.as_env(), "AGENTSTREAM_LOG_FORMAT": "json"}
    return spawn([sys.executable, "-m", "streams", *args], settings.data_dir / log_name, env=env)


def start_worker(settings: Settings, log_name: str = "worker.log") -> Child:
    """`agentstream worker` as a child process: it joins the consumer group of `settings.app_id`."""
    return start_command(settings, "worker", log_name=log_name)


def start_sinks(settings: Settings, log_name: str = "sinks.log", *, prefetch_only: bool = False) -> Child:
    """`agentstream sinks` (memory and archive sink processors, prefetcher) as a child process; with
    `prefetch_only`, the prefetcher alone."""
    return start_command(settings, "sinks", *(["--prefetch-only"] if prefetch_only else []), log_name=log_name)


def stop(*children: Child, timeout_s: float = 20.0) -> None:
    """SIGTERM every child at once, then SIGKILL those still running after `timeout_s`."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextmanager
def running(*children: Child, timeout_s: float = 20.0) -> Iterator[tuple[Child, ...]]:
    """Stop the children when the block ends, however it ends."""
    try:
        yield children
    finally:
        stop(*children, timeout_s=timeout_s)
