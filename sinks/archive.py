"""L4: every event of every topic, as Avro object-container files, in a folder or an S3 bucket.

Object names are `{topic}/{date}/{partition}/{first offset}-{last offset}.avro` (20-digit offsets,
UTC date of the first record), so a name says exactly which records it holds. Idempotence: before
writing, the offsets that existing objects of the partition already cover are left out, and what is
left is written as one object per unbroken run; writing the same records again writes nothing new,
and a run written twice (a crash before the commit) gets the same name and replaces itself.
Each entry keeps the record's original bytes: the archive is what replay reads.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import fastavro

from sinks.base import MemoryRecord, Rejection, Tier, TierUnavailable

__all__ = ["ARCHIVE_SCHEMA", "ArchiveTier", "LocalStore", "ObjectStore", "S3Store", "object_name"]

ARCHIVE_SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "ArchivedEvent", "namespace": "agentstream.archive",
    "doc": "One Kafka record as it was on the topic: where it was and its original bytes.",
    "fields": [
        {"name": "topic", "type": "string"},
        {"name": "partition", "type": "int"},
        {"name": "offset", "type": "long"},
        {"name": "timestamp", "type": "long"},
        {"name": "key", "type": ["null", "bytes"], "default": None},
        {"name": "value", "type": "bytes"},
        {"name": "event_type", "type": ["null", "string"], "default": None},
    ],
})

_NAME = re.compile(r"^(?P<topic>.+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<partition>\d+)/"
                   r"(?P<first>\d{20})-(?P<last>\d{20})\.avro$")


def object_name(topic: str, timestamp_ms: int, partition: int, first: int, last: int) -> str:
    date = datetime.fromtimestamp(timestamp_ms / 1000.0, tz=UTC).strftime("%Y-%m-%d")
    return f"{topic}/{date}/{partition}/{first:020d}-{last:020d}.avro"


class ObjectStore(Protocol):
    """Where archive objects live: put replaces, list gives names under a prefix."""

    def put(self, name: str, data: bytes) -> None: ...

    def get(self, name: str) -> bytes: ...

    def list(self, prefix: str) -> list[str]: ...


class LocalStore:
    """A folder; each object is written to a temporary file and renamed, so a reader never sees half."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def get(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*.avro"))


class S3Store:
    """An S3 bucket through boto3 (AWS, MinIO, moto); the bucket is created when missing."""

    def __init__(self, bucket: str, endpoint_url: str | None, region: str, access_key: str | None,
                 secret_key: str | None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key,
                                   aws_secret_access_key=secret_key,
                                   config=Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=10))

    def setup(self) -> None:
        existing = {b["Name"] for b in self.client.list_buckets().get("Buckets", [])}
        if self.bucket not in existing:
            self.client.create_bucket(Bucket=self.bucket)

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=name, Body=data, ContentType="avro/binary")

    def get(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()

    def list(self, prefix: str) -> list[str]:
        names: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            names.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(names)


def _unavailable(exc: Exception) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or exc.response.get("Error", {}).get("Code") in ("SlowDown", "RequestTimeout")
    return isinstance(exc, BotoCoreError | OSError)


class ArchiveTier(Tier):
    """Writes each batch as Avro files, one per (topic, date, partition, unbroken offset run)."""

    name = "archive"

    def __init__(self, store: ObjectStore, codec_level: str = "deflate") -> None:
        self.store = store
        self.codec = codec_level
        self._ranges: dict[tuple[str, int], list[tuple[int, int, str]]] = {}

    def setup(self) -> None:
        try:
            getattr(self.store, "setup", lambda: None)()
        except Exception as exc:
            if _unavailable(exc):
                raise TierUnavailable(self.name, str(exc), retry_after=2.0) from exc
            raise

    def ranges(self, topic: str, partition: int) -> list[tuple[int, int, str]]:
        """(first, last, name) of the partition's objects, sorted; listed once, then kept up to date."""
        key = (topic, partition)
        if key not in self._ranges:
            found = []
            for name in self.store.list(f"{topic}/"):
                m = _NAME.match(name)
                if m and m["topic"] == topic and int(m["partition"]) == partition:
                    found.append((int(m["first"]), int(m["last"]), name))
            self._ranges[key] = sorted(found)
        return self._ranges[key]

    def forget(self) -> None:
        """Drop the cached listings (after a rebalance another process may have written)."""
        self._ranges.clear()

    def write(self, batch: Sequence[MemoryRecord]) -> list[Rejection]:
        try:
            self._write(batch)
        except TierUnavailable:
            raise
        except Exception as exc:
            if _unavailable(exc):
                self.forget()
                raise TierUnavailable(self.name, str(exc)[:300], retry_after=2.0) from exc
            raise
        return []

    def _write(self, batch: Sequence[MemoryRecord]) -> None:
        by_partition: dict[tuple[str, int], dict[int, MemoryRecord]] = defaultdict(dict)
        for item in batch:
            by_partition[(item.topic, item.partition)][item.offset] = item
        for (topic, partition), items in by_partition.items():
            for run in self._runs(topic, partition, [items[o] for o in sorted(items)]):
                first, last = run[0].offset, run[-1].offset
                name = object_name(topic, run[0].timestamp_ms, partition, first, last)
                self.store.put(name, self._encode(run))
                ranges = self.ranges(topic, partition)
                ranges.append((first, last, name))
                ranges.sort()

    def _runs(self, topic: str, partition: int, items: list[MemoryRecord]) -> Iterator[list[MemoryRecord]]:
        """Records not yet archived, cut where an archived range or a new UTC date lies between two."""
        ranges = self.ranges(topic, partition)
        firsts = [r[0] for r in ranges]
        run: list[MemoryRecord] = []
        run_slot = run_date = None
        for item in items:
            slot = bisect_right(firsts, item.offset)  # ranges starting at or before this offset
            if slot and ranges[slot - 1][0] <= item.offset <= ranges[slot - 1][1]:
                if run:
                    yield run
                run = []
                continue  # already archived
            date = item.timestamp_ms // 86_400_000
            if run and (slot != run_slot or date != run_date):
                yield run
                run = []
            run.append(item)
            run_slot, run_date = slot, date
        if run:
            yield run

    def _encode(self, run: list[MemoryRecord]) -> bytes:
        out = io.BytesIO()
        fastavro.writer(out, ARCHIVE_SCHEMA, (
            {"topic": r.topic, "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp_ms,
             "key": r.key, "value": r.value, "event_type": r.event_type or None} for r in run), codec=self.codec)
        return out.getvalue()

    def read_object(self, name: str) -> list[dict[str, Any]]:
        return list(fastavro.reader(io.BytesIO(self.store.get(name))))

    def lookup(self, topic: str, partition: int, offset: int) -> dict[str, Any] | None:
        """The archived record at (topic, partition, offset), or None: the explicit lookup by key."""
        for first, last, name in self.ranges(topic, partition):
            if first <= offset <= last:
                return next((e for e in self.read_object(name) if e["offset"] == offset), None)
        return None

    def read_topic(self, topic: str) -> Iterator[dict[str, Any]]:
        """Every archived record of a topic, object by object (for replay and checks)."""
        for name in self.store.list(f"{topic}/"):
            if _NAME.match(name):
                yield from self.read_object(name)

    def count(self) -> int:
        """Objects in the archive (all topics)."""
        return len(self.store.list(""))
