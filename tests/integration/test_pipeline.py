"""The first path end to end on the real stack: tasks in, outputs and results out, bad bytes dead-lettered."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import fastavro
import pytest

from schemas import default_codec
from streams import kafka
from streams.client import ResultWatcher, make_task, read_topic, submit_tasks
from streams.replay.range import Bound, read_range
from streams.settings import Settings
from streams.topics import DEADLETTERS, OUTPUTS, RESULTS, TASKS

pytestmark = pytest.mark.integration

codec = default_codec()


async def _run_tasks(settings: Settings, tasks: list[dict], timeout: float = 90.0) -> dict[str, dict]:
    async with ResultWatcher(settings, codec) as watcher:
        ids = await submit_tasks(settings, codec, tasks)
        return await watcher.wait(ids, timeout)


async def _records(settings: Settings, topic: str) -> list:
    return [r async for r in read_topic(settings, codec, settings.topic(topic), from_beginning=True,
                                        idle_timeout_s=1.5)]


async def test_every_task_gets_one_output_per_step_and_a_result(isolated: Settings, worker_factory) -> None:
    worker_factory()
    tasks = [make_task(f"write a parser for format {n}", capability=c)
             for n, c in enumerate(["coding", "review", "research", "planning"] * 3)]
    results = await _run_tasks(isolated, tasks)
    assert set(results) == {t["task_id"] for t in tasks}
    for r in results.values():
        assert r["status"] == "ok" and r["model"].startswith("simulator/")
        assert r["steps"] == 1 and r["cost_usd"] > 0 and r["tokens_out"] > 0
    outputs = [r for r in await _records(isolated, OUTPUTS) if r.record]
    by_task = {o.record["task_id"]: o for o in outputs}
    assert set(by_task) == set(results)
    review = next(t for t in tasks if t["capability"] == "review")
    assert by_task[review["task_id"]].record["agent"] == "reviewer"
    assert by_task[review["task_id"]].key == review["task_id"].encode()


async def test_poison_records_are_dead_lettered_and_the_stream_goes_on(isolated: Settings, worker_factory) -> None:
    worker_factory()
    garbage = b"\x00\xffnot avro at all"
    unknown_fp = b"\xc3\x01" + b"\x13" * 8 + b"\x02\x04ab"
    producer = kafka.producer(isolated)
    await producer.start()
    try:  # all on one partition (same key), poison first, so the good one has to get past them
        for value in (garbage, unknown_fp, None):  # None: a tombstone
            await producer.send_and_wait(isolated.topic(TASKS), value, key=b"k", partition=0)
    finally:
        await producer.stop()
    good = make_task("after the poison")
    async with ResultWatcher(isolated, codec) as watcher:
        await _produce_raw(isolated, codec.encode("TaskRequested", good), partition=0)
        results = await watcher.wait([good["task_id"]], 90)
    assert results[good["task_id"]]["status"] == "ok"
    dead = [r.record for r in await _records(isolated, DEADLETTERS)]
    assert sorted(d["payload"] for d in dead) == sorted([garbage, unknown_fp, b""])
    assert all(d["stage"] == "decode" and d["topic"] == isolated.topic(TASKS) and d["partition"] == 0 for d in dead)
    by_payload = {d["payload"]: d for d in dead}
    assert "marker" in by_payload[garbage]["error"]
    assert "fingerprint" in by_payload[unknown_fp]["error"]
    assert by_payload[b""]["stage"] == "decode"  # a tombstone: dead-lettered, not a crashed processor
    assert by_payload[garbage]["offset"] < by_payload[unknown_fp]["offset"]


async def _produce_raw(settings: Settings, value: bytes, partition: int | None = None, key: bytes = b"k") -> None:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(TASKS), value, key=key, partition=partition)
    finally:
        await producer.stop()


def _foreign_schema(name: str) -> dict:
    schema_dir = Path(__file__).parents[2] / "schemas"
    for path in schema_dir.glob("*.avsc"):
        schema = json.loads(path.read_text())
        if schema["name"] == name:
            return schema
    raise LookupError(name)


async def test_a_client_with_only_the_avsc_files_can_submit_and_read_back(isolated: Settings, worker_factory) -> None:
    """No project code on this side: aiokafka, fastavro, the .avsc files and the topic names."""
    worker_factory()
    task_schema, result_schema = _foreign_schema("TaskRequested"), _foreign_schema("TaskResult")

    def fingerprint(schema: dict) -> bytes:
        """CRC-64-AVRO as the Avro spec gives it, written little-endian."""
        crc = empty = 0xC15D213AA4D7A795
        for byte in fastavro.schema.to_parsing_canonical_form(schema).encode():
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ (empty & -(crc & 1))
        return crc.to_bytes(8, "little")

    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(task_schema), {
        "task_id": "foreign-1", "description": "hello from another language", "pattern": "fast",
        "capability": "coding", "optimization": "balanced", "budget_usd": None, "tenant": "default",
        "metadata": {}, "created_at": 1_700_000_000_000})
    consumer = kafka.consumer(isolated, isolated.topic(RESULTS), auto_offset_reset="earliest")
    await consumer.start()
    try:
        await _produce_raw(isolated, b"\xc3\x01" + fingerprint(task_schema) + body.getvalue(), key=b"foreign-1")
        found = None
        for _ in range(300):
            batch = await consumer.getmany(timeout_ms=300)
            for messages in batch.values():
                for m in messages:
                    assert m.value[:2] == b"\xc3\x01" and m.value[2:10] == fingerprint(result_schema)
                    record = fastavro.schemaless_reader(io.BytesIO(m.value[10:]), fastavro.parse_schema(result_schema))
                    if record["task_id"] == "foreign-1":
                        found = record
            if found:
                break
    finally:
        await consumer.stop()
    assert found is not None and found["status"] == "ok" and found["output"]


async def test_sigkill_mid_run_loses_no_task_and_charges_none_twice(isolated: Settings, worker_factory) -> None:
    first = worker_factory(simulator_latency_ms=50.0, worker_concurrency=4)
    tasks = [make_task(f"task number {n}") for n in range(150)]
    async with ResultWatcher(isolated, codec) as watcher:
        ids = await submit_tasks(isolated, codec, tasks)
        assert len(await watcher.wait(ids[:20], 60)) == 20  # well under way ...
        os.kill(first.pid, signal.SIGKILL)  # ... then killed without a chance to commit or flush
        first.wait()
        answered = {r.record["task_id"] for r in await read_range(isolated, codec, isolated.topic(RESULTS),
                                                                  Bound("earliest"), Bound("now"))}
        assert 20 <= len(answered) < len(ids)  # the kill came mid-run: the rest is the next worker's
        worker_factory(simulator_latency_ms=50.0, worker_concurrency=4)
        results = await watcher.wait(ids, 120)
        probe = make_task("the last task")
        (last,) = (await _run_tasks(isolated, [probe])).values()
    assert set(results) == set(ids)
    assert all(r["status"] == "ok" and r["cost_usd"] > 0 for r in results.values())
    # Nothing charged twice: the tenant's spend is at most what its answers cost (a call answered just before
    # the kill may have gone unrecorded, never one recorded twice, nor one re-run and charged again).
    spent = float(last["metadata"]["tenant_spend_usd"]) - last["cost_usd"]
    assert spent <= sum(r["cost_usd"] for r in results.values()) + 2e-9  # the metadata has 9 decimals
