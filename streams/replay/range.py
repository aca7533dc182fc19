"""Read a range of a topic, per partition, by offset or by time (no consumer group: commits nothing).

A bound is an offset (the same on every partition), an ISO-8601 timestamp (resolved per partition with
`offsets_for_times`), `earliest`, or `now` (the end offsets when the read starts). The start is
inclusive and the end exclusive, so `--from 0 --to now` is everything written so far and two
adjacent ranges never share a record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import Codec
from streams import kafka
from streams.client import Received, _received, existing_end_offsets
from streams.settings import Settings

__all__ = ["Bound", "parse_bound", "read_range", "resolve_range"]

BoundKind = Literal["offset", "time", "earliest", "now"]


@dataclass(frozen=True)
class Bound:
    """One end of a range: an offset, epoch milliseconds, the earliest record, or the end now."""

    kind: BoundKind
    value: int = 0

    def __str__(self) -> str:
        if self.kind == "time":
            return datetime.fromtimestamp(self.value / 1000, UTC).isoformat()
        return str(self.value) if self.kind == "offset" else self.kind


def parse_bound(text: str) -> Bound:
    """`123` -> offset, `2026-11-25T17:00:00Z` -> time (UTC when no zone), `earliest`, `now`."""
    text = text.strip()
    if text in ("now", "earliest"):
        return Bound(text)  # type: ignore[arg-type]
    if text.isdigit():
        return Bound("offset", int(text))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an offset, an ISO timestamp, 'earliest' or 'now': {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Bound("time", int(moment.timestamp() * 1000))


async def resolve_range(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], start: Bound,
                        end: Bound) -> dict[TopicPartition, tuple[int, int]]:
    """[low, high) offsets per partition for the two bounds."""
    firsts = await consumer.beginning_offsets(list(ends))

    async def at(bound: Bound) -> dict[TopicPartition, int]:
        if bound.kind == "earliest":
            return dict(firsts)
        if bound.kind == "now":
            return dict(ends)
        if bound.kind == "offset":
            return {tp: min(max(bound.value, firsts[tp]), ends[tp]) for tp in ends}
        found = await consumer.offsets_for_times({tp: bound.value for tp in ends})
        # No record at or after the time on a partition: the range there starts (or stops) at its end.
        return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in ends}

    lows, highs = await at(start), await at(end)
    return {tp: (lows[tp], max(lows[tp], highs[tp])) for tp in ends}


def _decoded(codec: Codec, tp: TopicPartition, m: Any) -> Received:
    """A record of the range, decoded; a tombstone (null value) is kept as an undecodable record."""
    if m.value is None:
        return Received(tp.topic, tp.partition, m.offset, m.key, None, None, "tombstone (null value)")
    return _received(codec, tp, m)


async def read_range(settings: Settings, codec: Codec, topic: str, start: Bound, end: Bound,
                     on_progress: Callable[[int, int], None] | None = None) -> list[Received]:
    """Every record of `topic` in [start, end), in partition then offset order.

    `on_progress(done, total)` is called after each batch.
    """
    consumer = kafka.consumer(settings)
    await consumer.start()
    try:
        ends = await existing_end_offsets(settings, consumer, topic)
        spans = {tp: span for tp, span in (await resolve_range(consumer, ends, start, end)).items()
                 if span[1] > span[0]}
        total = sum(high - low for low, high in spans.values())
        if on_progress is not None:
            on_progress(0, total)
        got: dict[TopicPartition, list[Received]] = {tp: [] for tp in spans}
        if not spans:
            return []
        consumer.assign(list(spans))
        for tp, (low, _high) in spans.items():
            consumer.seek(tp, low)
        pending = set(spans)
        done = 0
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=1000)
            for tp, messages in batch.items():
                high = spans[tp][1]
                for m in messages:
                    if m.offset < high:
                        got[tp].append(_decoded(codec, tp, m))
                        done += 1
            for tp in list(pending):  # by position, not last offset: compaction and markers leave gaps
                if await consumer.position(tp) >= spans[tp][1]:
                    pending.discard(tp)
                    consumer.pause(tp)
            if on_progress is not None and batch:
                on_progress(done, total)
        return [r for tp in sorted(got, key=lambda t: t.partition) for r in got[tp]]
    finally:
        await consumer.stop()
