"""`git-watch`: produce one CodeChange per commit to code.changes, keyed by sha, skipping shas already there."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from schemas import Codec
from streams import kafka
from streams.code.git import DEFAULT_PATCH_LIMIT, commit_shas, read_commit, repo_root
from streams.replay.range import Bound, read_range
from streams.settings import Settings
from streams.topics import CODE_CHANGES

__all__ = ["WatchReport", "known_shas", "watch_repository"]


@dataclass(frozen=True)
class WatchReport:
    """Shas sent now, and shas skipped because code.changes already has them."""

    repository: str
    produced: list[str]
    skipped: list[str]


async def known_shas(settings: Settings, codec: Codec, repository: str) -> set[str]:
    """The shas of `repository` already on code.changes (read up to its current end)."""
    records = await read_range(settings, codec, settings.topic(CODE_CHANGES), Bound("earliest"), Bound("now"))
    return {r.record["sha"] for r in records
            if r.event_type == "CodeChange" and r.record is not None and r.record["repository"] == repository}


async def watch_repository(settings: Settings, codec: Codec, path: Path, *, since: str | None = None,
                           only: str | None = None, patch_limit: int = DEFAULT_PATCH_LIMIT,
                           on_sent: Callable[[str], None] | None = None) -> WatchReport:
    """Produce the commits of `path` (all, after `since`, or just `only`) that code.changes lacks."""
    root = await asyncio.to_thread(repo_root, path)
    repository = str(root)
    shas = await asyncio.to_thread(commit_shas, root, since, only)
    known = await known_shas(settings, codec, repository)
    fresh = [s for s in shas if s not in known]
    producer = kafka.producer(settings, linger_ms=5)
    await producer.start()
    try:
        pending = []
        for sha in fresh:
            record = await asyncio.to_thread(read_commit, root, sha, repository, patch_limit)
            pending.append(await producer.send(settings.topic(CODE_CHANGES), key=sha.encode(),
                                               value=codec.encode("CodeChange", record)))
            if on_sent is not None:
                on_sent(sha)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return WatchReport(repository, fresh, [s for s in shas if s in known])
