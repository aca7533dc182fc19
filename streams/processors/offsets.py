"""Ordered commits under concurrency: which offset of each partition may be committed now.

Many records of a partition run at once and finish in any order, but Kafka keeps one committed
offset per partition: everything below it counts as done. So a partition may be committed only up
to its lowest record still running; a record that is fetched but not yet handed out is above every
handed-out one and so never passed either. Only offsets actually handed out are tracked: offsets a
partition skips (compacted away, transaction markers) are never waited for. No Kafka and no
asyncio in here, so the rule can be tested on its own (tests/unit/test_offsets.py).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["OffsetTracker"]

P = TypeVar("P", bound=Hashable)


@dataclass
class _Partition:
    """Offsets of one partition handed out and not finished (a heap with lazy deletion)."""

    running: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)
    highest_taken: int = -1
    committed: int | None = None  # what was last reported committed

    def lowest_running(self) -> int | None:
        while self.heap and self.heap[0] not in self.running:
            heapq.heappop(self.heap)
        return self.heap[0] if self.heap else None

    def committable(self) -> int | None:
        lowest = self.lowest_running()
        if lowest is not None:
            return lowest
        return self.highest_taken + 1 if self.highest_taken >= 0 else None


class OffsetTracker(Generic[P]):
    """Per partition: offsets taken (in flight) and finished; the next offset safe to commit."""

    def __init__(self) -> None:
        self._parts: dict[P, _Partition] = {}

    def take(self, tp: P, offset: int) -> None:
        """`offset` of `tp` was handed out to run."""
        part = self._parts.setdefault(tp, _Partition())
        if offset in part.running:
            return
        part.running.add(offset)
        heapq.heappush(part.heap, offset)
        part.highest_taken = max(part.highest_taken, offset)

    def finish(self, tp: P, offset: int) -> bool:
        """`offset` of `tp` is done (in any order). False when it was not in flight (e.g. forgotten)."""
        part = self._parts.get(tp)
        if part is None or offset not in part.running:
            return False
        part.running.discard(offset)
        return True

    def forget(self, tp: P) -> None:
        """The partition was revoked: drop everything about it (a later finish of it is ignored)."""
        self._parts.pop(tp, None)

    def in_flight(self, tp: P | None = None) -> int:
        """Offsets running, of one partition or of all."""
        if tp is not None:
            part = self._parts.get(tp)
            return len(part.running) if part else 0
        return sum(len(p.running) for p in self._parts.values())

    def committable(self, tps: Iterable[P] | None = None) -> dict[P, int]:
        """{tp: the lowest offset still running, or the highest taken + 1 when none is}: the offset to
        commit (Kafka's committed offset is the next one to read). Partitions with nothing taken are left out."""
        wanted = self._parts if tps is None else {tp: self._parts[tp] for tp in tps if tp in self._parts}
        out = {}
        for tp, part in wanted.items():
            offset = part.committable()
            if offset is not None:
                out[tp] = offset
        return out

    def to_commit(self, tps: Iterable[P] | None = None) -> dict[P, int]:
        """Like `committable`, without the partitions whose offset did not move since `committed`."""
        return {tp: o for tp, o in self.committable(tps).items() if self._parts[tp].committed != o}

    def committed(self, offsets: dict[P, int]) -> None:
        """These offsets were committed (so `to_commit` leaves them out until they move)."""
        for tp, offset in offsets.items():
            part = self._parts.get(tp)
            if part is not None:
                part.committed = offset
