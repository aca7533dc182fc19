"""The ordered-commit tracker: a partition is committed only up to its lowest unfinished offset."""

from __future__ import annotations

from streams.processors.offsets import OffsetTracker

A, B = ("agent.tasks", 0), ("agent.tasks", 1)
TP = tuple[str, int]


def _tracker(taken: list[tuple[TP, int]], finished: list[tuple[TP, int]]) -> OffsetTracker[TP]:
    """A tracker that handed out `taken` and saw `finished` finish, in that order."""
    tracker: OffsetTracker[TP] = OffsetTracker()
    for tp, offset in taken:
        tracker.take(tp, offset)
    for tp, offset in finished:
        tracker.finish(tp, offset)
    return tracker


def test_nothing_taken_nothing_to_commit() -> None:
    tracker: OffsetTracker[tuple[str, int]] = OffsetTracker()
    assert tracker.committable() == {}
    assert tracker.finish(A, 3) is False  # never handed out


def test_out_of_order_finishes_commit_only_up_to_the_lowest_running() -> None:
    tracker: OffsetTracker[tuple[str, int]] = OffsetTracker()
    for offset in range(5):
        tracker.take(A, offset)
    for offset in (4, 3, 1):  # finish out of order: 0 and 2 still running
        assert tracker.finish(A, offset)
    assert tracker.committable() == {A: 0}
    tracker.finish(A, 0)
    assert tracker.committable() == {A: 2}  # 1 is done, 2 is not
    tracker.finish(A, 2)
    assert tracker.committable() == {A: 5}  # all done: the next offset to read
    assert tracker.in_flight() == 0


def test_gaps_are_not_waited_for() -> None:
    """Offsets never handed out (compacted away, transaction markers) do not hold the commit back."""
    tracker: OffsetTracker[tuple[str, int]] = OffsetTracker()
    for offset in (10, 13, 20):
        tracker.take(A, offset)
    tracker.finish(A, 20)
    assert tracker.committable() == {A: 10}
    tracker.finish(A, 10)
    assert tracker.committable() == {A: 13}  # not 11: 13 is running
    tracker.finish(A, 13)
    assert tracker.committable() == {A: 21}


def test_partitions_are_independent_and_to_commit_reports_only_moves() -> None:
    tracker = _tracker([(A, 0), (B, 7)], [(B, 7)])
    assert tracker.committable() == {A: 0, B: 8}
    assert tracker.committable([B]) == {B: 8}
    tracker.committed({A: 0, B: 8})
    assert tracker.to_commit() == {}
    tracker.take(B, 8)
    assert tracker.to_commit() == {}  # 8 running: B's committable offset is still 8
    tracker.finish(A, 0)
    assert tracker.to_commit() == {A: 1}
    assert tracker.in_flight(B) == 1 and tracker.in_flight(A) == 0


def test_revocation_forgets_the_partition_and_ignores_late_finishes() -> None:
    tracker = _tracker([(A, 0), (A, 1)], [(A, 1)])
    assert tracker.committable([A]) == {A: 0}  # what a revocation commits: 0 is abandoned, not passed
    tracker.forget(A)
    assert tracker.committable() == {}
    assert tracker.finish(A, 0) is False  # a cancelled task's late finish changes nothing
    tracker.take(A, 0)  # assigned again, read again from the committed offset
    assert tracker.committable() == {A: 0}


def test_taking_the_same_offset_twice_counts_once() -> None:
    tracker = _tracker([(A, 4), (A, 4)], [(A, 4)])
    assert tracker.committable() == {A: 5} and tracker.in_flight() == 0
