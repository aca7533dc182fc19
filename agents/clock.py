"""Wall-clock time in epoch milliseconds, the unit of every `created_at` on the wire."""

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    return int(time.time() * 1000)
