"""The key the code-change processor signs its tasks with, and the docs sink checks them with.

AGENTSTREAM_TASK_SIGNING_KEY when set (several machines: give them all the same one); else a random
key kept in the data folder (`task-signing.key`, mode 0600), made by whichever process needs it first,
so a worker and a docs sink sharing a data folder agree without any set-up.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from streams.settings import Settings

__all__ = ["KEY_FILE", "signing_key"]

KEY_FILE = "task-signing.key"


def signing_key(settings: Settings) -> bytes:
    """The signing key of these settings (created in the data folder on first use when not set)."""
    if settings.task_signing_key is not None:
        return settings.task_signing_key.get_secret_value().encode()
    path = settings.data_dir / KEY_FILE
    if not path.exists():
        _create(path)
    return path.read_bytes().strip()


def _create(path: Path) -> None:
    """Write a new key under a temporary name, then link it in place: a concurrent reader sees all of it or none,
    and of two processes creating it at once, the first link wins and both read that one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode())
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made it first: theirs is the key
    finally:
        tmp.unlink()
