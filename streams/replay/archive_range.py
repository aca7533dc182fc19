"""Read a range of a topic from the L4 archive, with the same bounds as from Kafka.

The archive keeps each record's partition, offset, timestamp, key and original bytes, so a range means
the same thing here as in `range.read_range`: offsets per partition, a time resolved per partition to
the first record at or after it (what Kafka's `offsets_for_times` does), `earliest`, and `now` (past
the last archived record). Start inclusive, end exclusive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from schemas import Codec, DecodeError
from sinks.archive import ArchiveTier
from streams.client import Received
from streams.replay.range import Bound

__all__ = ["read_archive_range"]


def _offset_at(bound: Bound, records: list[dict[str, Any]]) -> int:
    """The offset a bound stands for on one partition (records sorted by offset, not empty)."""
    if bound.kind == "earliest":
        return records[0]["offset"]
    if bound.kind == "now":
        return records[-1]["offset"] + 1
    if bound.kind == "offset":
        return bound.value
    return next((r["offset"] for r in records if r["timestamp"] >= bound.value), records[-1]["offset"] + 1)


def _received(codec: Codec, r: dict[str, Any]) -> Received:
    try:
        name, record = codec.decode(r["value"])
        return Received(r["topic"], r["partition"], r["offset"], r["key"], name, record, None)
    except DecodeError as exc:
        return Received(r["topic"], r["partition"], r["offset"], r["key"], None, None, str(exc))


def read_archive_range(archive: ArchiveTier, codec: Codec, topic: str, start: Bound, end: Bound,
                       on_progress: Callable[[int, int], None] | None = None) -> list[Received]:
    """Every archived record of `topic` in [start, end), in partition then offset order."""
    by_partition: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in archive.read_topic(topic):
        by_partition[r["partition"]][r["offset"]] = r  # an object rewritten after a crash holds the same records
    picked: list[Received] = []
    for partition in sorted(by_partition):
        records = [by_partition[partition][o] for o in sorted(by_partition[partition])]
        low, high = _offset_at(start, records), _offset_at(end, records)
        picked.extend(_received(codec, r) for r in records if low <= r["offset"] < high)
    if on_progress is not None:
        on_progress(len(picked), len(picked))
    return picked
