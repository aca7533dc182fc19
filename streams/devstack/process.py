"""Shared helpers of the local stack: pid files, port checks, waiting, spawning and stopping by pid.

Parts run as detached processes (their own session, output to a log file) so they outlive the
`agentstream up` command; a pid file per part is the only link back to them.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = [
    "HOST",

    "PartStatus",
    "StackError",
    "free_port",
    "free_ports",
    "pid_alive",
    "port_in_use",
    "port_open",
    "read_pid",
    "remove_pid",
    "spawn",
    "stop_pid",
    "tail",
    "wait_until",
    "write_pid",
]

HOST = "127.0.0.1"

# Popen objects of the processes this interpreter spawned: kept so they are reaped (no zombie,
# no "subprocess is still running" warning) when we stop them from the same process, e.g. in tests.
_children: dict[int, subprocess.Popen[bytes]] = {}

@dataclass(frozen=True)
class PartStatus:
    """One part of the stack as the user sees it: its name, address and state."""

    name: str
    address: str
    state: str  # "running" | "stopped" | "external" | "stale pid cleaned"

class StackError(RuntimeError):
    """A stack problem with a message written for the person at the terminal."""

def free_port() -> int:
    """A TCP port on loopback that is free right now (for tests: never the default ports)."""
    return free_ports(1)[0]

def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768

def free_ports(count: int) -> list[int]:
    """`count` distinct free ports, picked below the ephemeral range: a port the kernel hands out
    for bind(0) can be taken by any outgoing connection before our server binds it."""
    low = min(_ephemeral_low(), 65536)
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(20000, low - 1) if low > 21000 else random.randint(1024, 65535)
        if port in chosen:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        chosen.append(port)
    return chosen

def port_open(port: int, host: str = HOST, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections on the port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False

def port_in_use(port: int, host: str = HOST) -> bool:
    """True when a server could not bind the port (SO_REUSEADDR, so TIME_WAIT leftovers don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False

def pid_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie (a zombie of ours is reaped here)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE:
            return True
    except psutil.NoSuchProcess:
        _children.pop(pid, None)
        return False
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()
    return False

def write_pid(path: Path, pid: int) -> None:
    """Record the pid with its start time, so a reused pid is not mistaken for our part."""
    try:
        path.write_text(f"{pid}\n{psutil.Process(pid).create_time():.2f}\n")
    except psutil.Error:  # already gone: the readiness loop reports it with the log
        path.write_text(f"{pid}\n")

def read_pid(path: Path) -> int | None:
    """The pid recorded in the file if that very process still runs, else None (file left alone)."""
    try:
        lines = path.read_text().split()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if not pid_alive(pid):
        return None
    if len(lines) > 1:
        with contextlib.suppress(psutil.Error, ValueError):
            if abs(psutil.Process(pid).create_time() - float(lines[1])) > 1.0:
                return None  # the pid was reused by some other process
    return pid

def remove_pid(path: Path) -> None:
    """Remove a pid file; a missing one is fine."""
    path.unlink(missing_ok=True)

def spawn(
    cmd: Sequence[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Start a detached process (own session, stdin closed, output appended to the log); return its pid."""
    with log_path.open("ab") as log:
        log.write(f"\n=== agentstream {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid

def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `check` until it returns True or the timeout passes; exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except Exception:  # noqa: S110 - a server that is still starting may fail in any way
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)

def stop_pid(pid: int, *, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Ask the process to stop with `sig`, wait, then SIGKILL it if it is still there."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    if wait_until(lambda: not pid_alive(pid), timeout, 0.05):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 5.0, 0.05)

def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file (for error messages), or a note that there is no log."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.rstrip().splitlines()[-lines:])

