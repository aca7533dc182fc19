"""Memory integrity: compare what L1-L3 hold with the L4 archive, and restore them from it.

The archive is the versioned backup: every record of every topic, with its original bytes. For each
tier, the archived events it should hold (by the routing policy, and by the tier's own rules: L1 keeps
small values for a TTL, L2 only answers that succeeded) are compared by event id and a content hash
(`Tier.fingerprint`, the hash of what the tier's own writer stores) with what the tier holds
(`Tier.fingerprints`): missing, changed, and extra (held, in range, but in no archived event).
A restore writes the missing and changed events again through the same idempotent tier writers, so it
can be run any number of times. Extras are reported, never deleted (the archive may lag the tiers by
its batch wait; a later run decides).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas import Codec, DecodeError
from sinks.archive import ArchiveTier
from sinks.base import MemoryRecord, Tier
from sinks.router import Router
from streams.settings import Settings
from streams.topics import ALL_TOPICS

__all__ = ["TIERS", "TierReport", "archived_events", "restore", "verify"]

TIERS = {"l1": "redis", "l2": "vectors", "l3": "postgres"}
"""The names `--tier` takes, and the tier each one is."""


@dataclass
class TierReport:
    """One tier against the archive: event ids missing, changed and extra, and how many were checked."""

    tier: str
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.changed or self.extra)


def archived_events(settings: Settings, archive: ArchiveTier, codec: Codec, topics: Iterable[str],
                    start_ms: int | None = None, end_ms: int | None = None) -> dict[str, MemoryRecord]:
    """The archived events of `topics` created in [start, end), by event id (the last archived copy wins,
    as it does in the tiers)."""
    events: dict[str, MemoryRecord] = {}
    for topic in topics:
        event_type = ALL_TOPICS[topic]
        for entry in sorted(archive.read_topic(settings.topic(topic)), key=lambda e: (e["partition"], e["offset"])):
            try:
                record = codec.decode_as(event_type, entry["value"])
            except DecodeError:
                continue  # a dead letter in the making: no tier holds it
            created = int(record.get("created_at") or entry["timestamp"])
            if (start_ms is not None and created < start_ms) or (end_ms is not None and created >= end_ms):
                continue
            item = MemoryRecord(event_type, record, entry["topic"], entry["partition"], entry["offset"],
                                entry["timestamp"], entry["key"], entry["value"])
            events[item.id] = item
    return events


def _compare(name: str, tier: Tier, policy: Router, events: dict[str, MemoryRecord], start_ms: int | None,
             end_ms: int | None, expiry_ms: int | None) -> tuple[TierReport, list[MemoryRecord]]:
    """The report, and the archived events to write again (missing and changed)."""
    report, repair = TierReport(name), []
    held = tier.fingerprints()
    routed_types = {t for t in ALL_TOPICS.values() if tier.name in policy.tiers_for(t)}
    expected: set[str] = set()
    for event_id, item in sorted(events.items()):
        if tier.name not in policy.tiers_for(item.event_type):
            continue
        want = tier.fingerprint(item)
        if want is None:
            continue
        expected.add(event_id)
        report.checked += 1
        have = held.get(event_id)
        if have is None:
            if expiry_ms is not None and int(item.record.get("created_at") or 0) < expiry_ms:
                continue  # may have expired from L1 by its TTL: not missing
            report.missing.append(event_id)
            repair.append(item)
        elif have.digest != want:
            report.changed.append(event_id)
            repair.append(item)
    for event_id, have in sorted(held.items()):
        in_range = (start_ms is None or have.created_at >= start_ms) and (end_ms is None or have.created_at < end_ms)
        if event_id not in expected and in_range and event_id.split(":", 1)[0] in routed_types:
            report.extra.append(event_id)
    return report, repair


def verify(settings: Settings, tiers: dict[str, Tier], archive: ArchiveTier, policy: Router, codec: Codec,
           topics: Iterable[str], start_ms: int | None = None, end_ms: int | None = None,
           repair: bool = False) -> list[TierReport]:
    """Each of `tiers` (by --tier name) against the archive; with `repair`, missing and changed events
    are written again through the tier itself (idempotent), and the report says what was found before."""
    events = archived_events(settings, archive, codec, topics, start_ms, end_ms)
    reports = []
    for name, tier in tiers.items():
        expiry = int(time.time() * 1000 - settings.memory_ttl_s * 1000) if tier.name == "redis" else None
        report, to_write = _compare(name, tier, policy, events, start_ms, end_ms, expiry)
        if repair and to_write:
            restore(tier, to_write)
        reports.append(report)
    return reports


def restore(tier: Tier, items: list[MemoryRecord], batch: int = 500) -> None:
    """Write `items` again through the tier's own (idempotent) writer."""
    for n in range(0, len(items), batch):
        tier.write(items[n:n + batch])
    tier.flush()
