"""The chaos suite's tools, used from outside the workers as a user would: a fleet of `agentstream worker`
processes, a task load produced over time, faults, and the audit of what came out (results, spend, sinks).

Every loop is bounded and every process started here is stopped by `Fleet.stop_all` / the fixtures.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from schemas import Codec, DecodeError
from streams import kafka
from streams.client import end_offsets, make_task
from streams.devstack import LocalStack
from streams.devstack.process import read_pid, wait_until
from streams.harness import start_worker, stop
from streams.memory.tiers import build_archive
from streams.processors.ledger import spend_total
from streams.settings import Settings
from streams.topics import (
    ALL_TOPICS,
    DEADLETTERS,
    OUTPUTS,
    PROMPT_OUTCOMES,
    RESULTS,
    SPEND_LEDGER,
    TASKS,
)

__all__ = ["Audit", "Faults", "Fleet", "Load", "audit", "run_faults", "wait_answered", "wait_sinks"]

CRASHES = {"sigkill-worker", "kill-leader-broker"}  # faults after which a rerun of a finished task is allowed


def now_ms() -> int:
    return int(time.time() * 1000)


class Fleet:
    """`agentstream worker` child processes of one app id; started and stopped by signals like a user would."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.live: list[subprocess.Popen[bytes]] = []
        self.dead: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.exited_alone: list[int] = []

    def add(self) -> str:
        self.started += 1
        self.live.append(start_worker(self.settings, f"chaos-{self.settings.app_id}-w{self.started}.log"))
        return f"worker pid {self.live[-1].pid} started ({len(self.live)} live)"

    def reap(self) -> list[str]:
        """Workers that exited by themselves (a crash of their own) leave the fleet; one line each."""
        gone = [proc for proc in self.live if proc.poll() is not None]
        for proc in gone:
            self.live.remove(proc)
            self.dead.append(proc)
            self.exited_alone.append(proc.pid)
        return [f"worker pid {proc.pid} had exited by itself (rc {proc.returncode})" for proc in gone]

    def _victim(self) -> subprocess.Popen[bytes]:
        """The oldest live worker: the one surely past start-up, holding partitions."""
        self.reap()
        if not self.live:
            self.add()
        victim = self.live[0]
        self.live.remove(victim)
        self.dead.append(victim)
        return victim

    def sigkill(self) -> str:
        victim = self._victim()
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        return f"worker pid {victim.pid} SIGKILLed"

    def sigterm(self, timeout_s: float = 60.0) -> str:
        victim = self._victim()
        began = time.monotonic()
        stop(victim, timeout_s=timeout_s)
        took = time.monotonic() - began
        how = "killed after timeout" if victim.returncode == -signal.SIGKILL else "stopped"
        return f"worker pid {victim.pid} SIGTERM, {how} in {took:.1f}s (rc {victim.returncode})"

    def stop_all(self) -> None:
        stop(*self.live, timeout_s=30.0)
        self.dead += self.live
        self.live = []


@dataclass
class FaultRecord:
    at_ms: int
    name: str
    detail: str


class Faults:
    """Faults on the fleet and the stack, each recorded with its wall-clock time."""

    def __init__(self, fleet: Fleet, stack: LocalStack, settings: Settings) -> None:
        self.fleet, self.stack, self.settings = fleet, stack, settings
        self.log: list[FaultRecord] = []
        self.t0 = now_ms()
        self.restarts: list[asyncio.Task[str]] = []  # brokers coming back while the next faults run

    async def run(self, name: str) -> None:
        at = now_ms()
        for line in self.fleet.reap():
            print(f"  [{(at - self.t0) / 1000:6.1f}s] {line}", flush=True)
        fault = getattr(self, name.replace("-", "_"))
        detail = await fault() if asyncio.iscoroutinefunction(fault) else await asyncio.to_thread(fault)
        self.log.append(FaultRecord(at, name, detail))
        print(f"  [{(at - self.t0) / 1000:6.1f}s] {name}: {detail}", flush=True)

    def sigkill_worker(self) -> str:
        return self.fleet.sigkill() + "; " + self.fleet.add()

    def sigterm_worker(self) -> str:
        return self.fleet.sigterm() + "; " + self.fleet.add()

    def add_worker(self) -> str:
        return self.fleet.add()

    def remove_worker(self) -> str:
        return self.fleet.sigterm()

    async def kill_leader_broker(self, down_s: float = 8.0) -> str:
        """SIGKILL the node leading most partitions of agent.tasks; it is started again `down_s` later,
        in the background (a JVM start and log recovery take long on a busy machine)."""
        await self.recovered()  # one node down at a time: two would leave no quorum and no min ISR
        node = await _busiest_leader(self.settings, self.settings.topic(TASKS))
        part = self.stack.kafka_node(node)
        await asyncio.to_thread(part.down, signal.SIGKILL)

        async def restart() -> str:
            await asyncio.sleep(down_s)
            began = time.monotonic()
            await asyncio.to_thread(part.up)
            done = f"kafka-{node} back after {down_s:.0f}s down + {time.monotonic() - began:.1f}s to start"
            print(f"  [{(now_ms() - self.t0) / 1000:6.1f}s] {done}", flush=True)
            return done

        self.restarts.append(asyncio.create_task(restart()))
        return f"kafka-{node} (leader of most {TASKS} partitions) SIGKILLed"

    async def recovered(self) -> None:
        """Every broker killed is running again."""
        await asyncio.gather(*self.restarts)

    def stop_stores(self, down_s: float = 6.0) -> str:
        """PostgreSQL (fast shutdown) and Redis (SHUTDOWN SAVE: L1 keeps its keys, as a persisted cache would)."""
        parts = {p.name: p for p in self.stack.parts}
        client = redis.Redis.from_url(self.settings.redis_dsn, socket_timeout=10)
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        finally:
            client.close()
        wait_until(lambda: read_pid(parts["redis"].pid_file) is None, 20)
        parts["postgres"].down()
        time.sleep(down_s)
        parts["redis"].up()
        parts["postgres"].up()
        return f"PostgreSQL and Redis stopped for {down_s:.0f}s, started again"


async def _busiest_leader(settings: Settings, topic: str) -> int:
    admin = kafka.admin(settings)
    await admin.start()
    try:
        (described,) = await kafka.retrying(lambda: admin.describe_topics([topic]))
    finally:
        await admin.close()
    leaders = Counter(p["leader"] for p in described["partitions"] if p["leader"] >= 0)
    return leaders.most_common(1)[0][0]


TENANTS = [f"tenant-{i:02d}" for i in range(12)]
PATTERNS = ["fast"] * 7 + ["balanced"] * 2 + ["quality"]


@dataclass
class Load:
    """Tasks produced over time, half keyed by tenant (run where they land), half by task id (one more hop)."""

    settings: Settings
    codec: Codec
    run: str
    sent: dict[str, int] = field(default_factory=dict)  # task id -> when the broker acknowledged it (ms)
    tenant: dict[str, str] = field(default_factory=dict)
    failed: int = 0
    numbered: int = 0
    experiment_prompt: str | None = None  # every 10th task asks for it: it runs in the prompt experiment

    def task(self, n: int, pattern: str | None = None) -> dict[str, Any]:
        rng = random.Random(n)
        pattern = pattern or rng.choice(PATTERNS)
        capability = self.experiment_prompt if self.experiment_prompt and n % 10 == 0 else "coding"
        return make_task(f"Chaos task {n}: make the {rng.choice(['cache', 'queue', 'parser', 'client'])} "
                         f"handle {rng.choice(['retries', 'timeouts', 'large input', 'bad input'])}",
                         task_id=f"chaos-{self.run}-{n:05d}", tenant=rng.choice(TENANTS), pattern=pattern,
                         capability=capability)

    async def produce(self, count: int, duration_s: float, pattern: str | None = None) -> None:
        producer = kafka.producer(self.settings, linger_ms=5, request_timeout_ms=30_000)
        await producer.start()
        try:
            began = time.monotonic()
            pending: list[Awaitable[Any]] = []
            for n in range(count):
                delay = began + duration_s * n / count - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = self.task(self.numbered, pattern)
                self.numbered += 1
                key = task["tenant"].encode() if n % 2 == 0 else task["task_id"].encode()
                value = self.codec.encode("TaskRequested", task)
                future = await producer.send(self.settings.topic(TASKS), value, key=key)
                pending.append(self._acked(future, task))
                if len(pending) >= 50:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    async def _acked(self, future: Awaitable[Any], task: dict[str, Any]) -> None:
        try:
            await future
        except Exception as exc:  # a send the broker never acknowledged is not "sent"
            self.failed += 1
            print(f"  send failed: {task['task_id']}: {exc!r}", flush=True)
            return
        self.sent[task["task_id"]] = now_ms()
        self.tenant[task["task_id"]] = task["tenant"]


@dataclass
class Record:
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes


async def read_all(settings: Settings, topic: str) -> list[Record]:
    """Every record of a topic up to its end offsets now (no consumer group)."""
    consumer = kafka.consumer(settings)
    await consumer.start()
    out: list[Record] = []
    try:
        ends = await end_offsets(settings, consumer, topic)
        ends = {tp: end for tp, end in ends.items() if end > 0}
        if not ends:
            return out
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        deadline = time.monotonic() + 120
        while ends and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, messages in batch.items():
                out += [Record(tp.partition, m.offset, m.timestamp, m.key, m.value) for m in messages]
                if messages and messages[-1].offset + 1 >= ends.get(tp, 0):
                    ends.pop(tp, None)
            for tp in list(ends):  # transaction markers or compaction can leave a gap at the end
                if await consumer.position(tp) >= ends[tp]:
                    ends.pop(tp)
    finally:
        await consumer.stop()
    return out


async def topic_sizes(settings: Settings, topics: list[str]) -> int:
    """How many records the topics hold (end minus beginning offsets)."""
    consumer = kafka.consumer(settings)
    await consumer.start()
    try:
        total = 0
        for topic in topics:
            ends = await end_offsets(settings, consumer, topic)
            if ends:
                begins = await consumer.beginning_offsets(list(ends))
                total += sum(ends[tp] - begins[tp] for tp in ends)
        return total
    finally:
        await consumer.stop()


async def answered_ids(settings: Settings, codec: Codec) -> set[str]:
    ids = set()
    for r in await read_all(settings, settings.topic(RESULTS)):
        try:
            ids.add(codec.decode_as("TaskResult", r.value)["task_id"])
        except DecodeError:
            continue
    return ids


async def wait_answered(settings: Settings, codec: Codec, ids: set[str], timeout_s: float,
                        stalled_s: float = 45.0) -> float:
    """Poll agent.results until every id has a result, the time is up, or nothing new came for
    `stalled_s` (a task whose offset was committed without a result never comes); return the seconds waited."""
    began = progress = time.monotonic()
    missing_before = len(ids) + 1
    while time.monotonic() - began < timeout_s and time.monotonic() - progress < stalled_s:
        missing = ids - await answered_ids(settings, codec)
        if not missing:
            break
        if len(missing) < missing_before:
            missing_before, progress = len(missing), time.monotonic()
        print(f"  waiting: {len(missing)} of {len(ids)} tasks without a result", flush=True)
        await asyncio.sleep(2)
    return time.monotonic() - began


def sink_counts(settings: Settings) -> dict[str, int]:
    """Rows or keys per sink tier for this run's scope (the topic prefix)."""
    scope = settings.topic_prefix
    counts: dict[str, int] = {}
    with psycopg.connect(settings.postgres_dsn, connect_timeout=5) as conn:
        def one(sql: str) -> int:
            return conn.execute(sql, (scope,)).fetchone()[0]  # type: ignore[index]

        counts["pg memory_tasks"] = one("SELECT count(*) FROM memory_tasks WHERE scope = %s")
        counts["pg memory_steps"] = one("SELECT count(*) FROM memory_steps WHERE scope = %s")
        counts["pg memory_outcomes"] = one("SELECT count(*) FROM memory_outcomes WHERE scope = %s")
        counts["pg memory_vectors"] = one(
            "SELECT count(*) FROM memory_vectors WHERE scope = %s AND event_type = 'TaskResult' AND chunk = 0")
    client = redis.Redis.from_url(settings.redis_dsn, socket_timeout=5)
    try:
        counts["redis event keys"] = sum(1 for _ in client.scan_iter(match=f"{scope}mem:event:*", count=2000))
    finally:
        client.close()
    archive = build_archive(settings)
    offsets = [(e["topic"], e["partition"], e["offset"]) for t in ALL_TOPICS
               for e in archive.read_topic(settings.topic(t))]
    counts["archive records"] = len(offsets)
    counts["archive distinct"] = len(set(offsets))
    return counts


async def expected_sinks(settings: Settings, codec: Codec) -> dict[str, int]:
    """The unique events each tier should hold, read from the topics."""
    def unique(records: list[Record], event_type: str, id_field: str) -> set[str]:
        ids = set()
        for r in records:
            try:
                ids.add(codec.decode_as(event_type, r.value)[id_field])
            except DecodeError:
                continue
        return ids

    results = unique(await read_all(settings, settings.topic(RESULTS)), "TaskResult", "task_id")
    outputs = unique(await read_all(settings, settings.topic(OUTPUTS)), "AgentOutput", "output_id")
    outcomes = unique(await read_all(settings, settings.topic(PROMPT_OUTCOMES)), "PromptOutcome", "outcome_id")
    records = await topic_sizes(settings, [settings.topic(t) for t in ALL_TOPICS])
    return {"pg memory_tasks": len(results), "pg memory_steps": len(outputs), "pg memory_outcomes": len(outcomes),
            "pg memory_vectors": len(results), "redis event keys": len(results) + len(outputs),
            "archive records": records, "archive distinct": records}


async def wait_sinks(settings: Settings, codec: Codec, timeout_s: float, stalled_s: float = 90.0,
                     on_stall: Callable[[], None] | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """Poll until every tier holds what the topics say, the time is up, or no count moved for `stalled_s`
    (then `on_stall()`, e.g. ask the sinks where they wait); return (expected, found)."""
    began = progress = time.monotonic()
    expected, found = await expected_sinks(settings, codec), {}
    while time.monotonic() - began < timeout_s and time.monotonic() - progress < stalled_s:
        try:
            now = await asyncio.to_thread(sink_counts, settings)
        except Exception as exc:  # a store that is still starting
            print(f"  sink counts not readable yet: {exc!r}", flush=True)
            now = {}
        if now != found:
            progress, found = time.monotonic(), now
            short = {tier: f"{found.get(tier)}/{want}" for tier, want in expected.items() if found.get(tier) != want}
            print(f"  sinks: {short or 'all as expected'}", flush=True)
        if found == expected:
            break
        await asyncio.sleep(3)
        expected = await expected_sinks(settings, codec)
    if found != expected and on_stall is not None:
        on_stall()
        await asyncio.sleep(1)
    return expected, found


async def tenant_spend(settings: Settings) -> dict[str, float] | None:
    """Spend per tenant from the spend ledger (agent.ledger.spend: the largest total of each `tenant|day`)."""
    totals: dict[str, float] = {}
    for r in await read_all(settings, settings.topic(SPEND_LEDGER)):
        charged = spend_total(r.key, r.value)
        if charged is not None:
            totals[charged[0]] = max(totals.get(charged[0], 0.0), charged[1])
    if not totals:
        return None
    spend: dict[str, float] = defaultdict(float)
    for key, value in totals.items():
        spend[key.rsplit("|", 1)[0]] += value
    return dict(spend)


@dataclass
class Audit:
    """What the run produced, judged against what a user was promised."""

    name: str
    sent: int
    failed_sends: int
    answered: int
    twice_after_crash: int
    twice_otherwise: int
    same_run_written_twice: int
    not_ok: int
    dead_letters: int
    spend_delta: float | None
    tenants_overcharged: int | None
    sinks_expected: dict[str, int]
    sinks_found: dict[str, int]
    faults: list[FaultRecord]
    in_flight: list[int]
    drain_s: float
    on_topic: int = 0  # sent tasks found on agent.tasks (the broker kept them)
    lost_behind_commit: int = 0  # unanswered tasks whose agent.tasks offset the group committed past
    exited_alone: int = 0
    doubles_by_fault: dict[str, int] = field(default_factory=dict)
    experiment: tuple[int, int] | None = None  # (outcomes counted, outputs that ran in the experiment)
    doubled_otherwise: list[str] = field(default_factory=list)  # which tasks, to find them in the logs

    @property
    def lost(self) -> int:
        return self.sent - self.answered

    @property
    def error_rate(self) -> float:
        return (self.not_ok + self.dead_letters) / max(1, self.sent)

    def rows(self) -> list[tuple[str, str, str, bool]]:
        """(measure, value, wanted, ok) per line of the table."""
        doubles = ", ".join(f"{n} {c}" for n, c in sorted(self.doubles_by_fault.items())) or "none"
        rows = [
            ("tasks answered / sent", f"{self.answered} / {self.sent}", "all", self.lost == 0),
            ("sent tasks on agent.tasks (kept by the brokers)", f"{self.on_topic} / {self.sent}", "all",
             self.on_topic == self.sent),
            ("unanswered tasks the group committed past", str(self.lost_behind_commit), "0",
             self.lost_behind_commit == 0),
            ("sends not acknowledged", str(self.failed_sends), "0", self.failed_sends == 0),
            ("workers that exited by themselves", str(self.exited_alone), "0", self.exited_alone == 0),
            ("answered twice, rerun after a crash (first result before the crash)", str(self.twice_after_crash),
             "allowed", True),
            ("answered twice, otherwise (graceful stop, rebalance, two copies at once)", str(self.twice_otherwise),
             "0", self.twice_otherwise == 0),
            ("doubles by the last fault before the second result", doubles, "-", True),
            ("one run's result written twice", str(self.same_run_written_twice), "0", self.same_run_written_twice == 0),
        ]
        if self.spend_delta is None:
            rows.append(("tenant spend - cost of unique tasks", "spend not readable", "0", False))
        else:
            rows.append(("tenant spend - cost of unique tasks", f"{self.spend_delta:+.6f} USD "
                         f"({self.tenants_overcharged} tenants over)", "0", abs(self.spend_delta) < 1e-6))
        if self.experiment is not None:
            counted, ran = self.experiment
            rows.append(("prompt experiment: outcomes counted / outputs that ran in it", f"{counted} / {ran}",
                         "equal", counted == ran))
        for tier, want in self.sinks_expected.items():
            got = self.sinks_found.get(tier)
            rows.append((f"sink {tier}", "unreadable" if got is None else str(got), str(want), got == want))
        rows.append(("error rate (not ok + dead letters) / sent",
                     f"{100 * self.error_rate:.2f}% ({self.not_ok} + {self.dead_letters})", "< 0.1%",
                     self.error_rate < 0.001))
        return rows

    def table(self) -> str:
        faults = Counter(f.name for f in self.faults)
        lines = [f"**{self.name}**: faults {', '.join(f'{n} x{c}' for n, c in faults.items())}; "
                 f"in flight at each fault {self.in_flight}; last result {self.drain_s:.0f} s after the load ended",
                 "", "| measure | value | wanted | ok |", "|---|---|---|---|"]
        lines += [f"| {m} | {v} | {w} | {'-' if w == '-' else 'yes' if ok else '**NO**'} |"
                  for m, v, w, ok in self.rows()]
        return "\n".join(lines)

    def failures(self) -> list[str]:
        failed = [f"{m}: {v} (wanted {w})" for m, v, w, ok in self.rows() if not ok]
        if failed and self.doubled_otherwise:
            failed.append("answered twice otherwise: " + "; ".join(self.doubled_otherwise[:10]))
        return failed


async def audit(name: str, settings: Settings, codec: Codec, load: Load, faults: list[FaultRecord],
                sinks: tuple[dict[str, int], dict[str, int]], drain_s: float, exited_alone: int) -> Audit:
    """Read every result, dead letter and the spend; classify the doubles by the faults around them."""
    by_task: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for r in await read_all(settings, settings.topic(RESULTS)):
        try:
            result = codec.decode_as("TaskResult", r.value)
        except DecodeError:
            continue
        if result["task_id"] in load.sent:
            by_task[result["task_id"]].append((r.timestamp, result))
    crashes = sorted(f.at_ms for f in faults if f.name in CRASHES or "killed after timeout" in f.detail)
    after_crash = otherwise = same_run = 0
    doubled_otherwise: list[str] = []
    by_fault: Counter[str] = Counter()
    for runs in by_task.values():
        runs.sort(key=lambda run: run[0])
        distinct = {(res["created_at"], res["output"]) for _, res in runs}
        same_run += len(runs) - len(distinct)
        if len(distinct) < 2:
            continue
        first, last = runs[0][0], runs[-1][0]
        if any(first < at < last for at in crashes):
            after_crash += 1
        else:
            otherwise += 1
            doubled_otherwise.append(f"{runs[0][1]['task_id']} (attempts "
                                     f"{', '.join(res['metadata'].get('attempt', '?') for _, res in runs)})")
        before = [f.name for f in faults if f.at_ms < runs[1][0]]
        by_fault[before[-1] if before else "no fault"] += 1
    on_topic, behind = await _tasks_on_topic(settings, codec, load, set(by_task))
    # The last result of a task is the one whose calls stand in the ledger: a result written twice (a
    # crash between it and its done mark) may differ from the first where the rerun made a lost call again.
    results = [runs[-1][1] for runs in by_task.values()]
    dead = [r for r in await read_all(settings, settings.topic(DEADLETTERS))]
    dead_count = 0
    for r in dead:
        try:
            if codec.decode_as("DeadLetter", r.value)["stage"] in ("process", "route", "decode"):
                dead_count += 1
        except DecodeError:
            continue
    spend = await tenant_spend(settings)
    delta = overcharged = None
    if spend is not None:
        cost: dict[str, float] = defaultdict(float)
        for result in results:
            cost[load.tenant[result["task_id"]]] += result["cost_usd"]
        delta = sum(spend.values()) - sum(cost.values())
        overcharged = sum(1 for t in cost.keys() | spend.keys() if spend.get(t, 0.0) - cost.get(t, 0.0) > 1e-9)
    answered_at = sorted(runs[0][0] for runs in by_task.values())
    sent_at = sorted(load.sent.values())
    in_flight = [_count_before(sent_at, f.at_ms) - _count_before(answered_at, f.at_ms) for f in faults]
    return Audit(name, len(load.sent), load.failed, len(by_task), after_crash, otherwise, same_run,
                 sum(1 for r in results if r["status"] != "ok"), dead_count, delta, overcharged,
                 sinks[0], sinks[1], faults, in_flight, drain_s, on_topic, behind, exited_alone,
                 dict(by_fault), doubled_otherwise=doubled_otherwise)


async def _tasks_on_topic(settings: Settings, codec: Codec, load: Load, answered: set[str]) -> tuple[int, int]:
    """(sent tasks found on agent.tasks, unanswered ones below the workers' committed offset there)."""
    where: dict[str, tuple[int, int]] = {}
    for r in await read_all(settings, settings.topic(TASKS)):
        try:
            where[codec.decode_as("TaskRequested", r.value)["task_id"]] = (r.partition, r.offset)
        except DecodeError:
            continue
    admin = kafka.admin(settings)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(f"{settings.app_id}-tasks")  # the task stage's group
    finally:
        await admin.close()
    tasks_topic = settings.topic(TASKS)
    done_below = {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == tasks_topic}
    lost = [where[t] for t in load.sent.keys() - answered if t in where]
    behind = sum(1 for partition, offset in lost if offset < done_below.get(partition, -1))
    return sum(1 for t in load.sent if t in where), behind


def _count_before(times: list[int], at: int) -> int:
    return bisect.bisect_left(times, at)


async def run_faults(faults: Faults, schedule: list[str], every_s: float, first_after_s: float) -> None:
    """One fault every `every_s` seconds (after the previous one finished), in the order given."""
    await asyncio.sleep(first_after_s)
    for name in schedule:
        began = time.monotonic()
        await faults.run(name)
        await asyncio.sleep(max(0.0, every_s - (time.monotonic() - began)))


async def experiment_counts(settings: Settings, codec: Codec, name: str, timeout_s: float = 90.0) -> tuple[int, int]:
    """(outcomes the scoring processor counted, unique ok outputs that ran in the experiment), once the
    count stops short of the outputs for `timeout_s` with no progress, or matches them."""
    from agents.prompt_registry import PromptRegistry

    ran = set()
    for r in await read_all(settings, settings.topic(OUTPUTS)):
        try:
            output = codec.decode_as("AgentOutput", r.value)
        except DecodeError:
            continue
        if output["metadata"].get("experiment") == name and output["status"] == "ok":
            ran.add(output["output_id"])
    registry = PromptRegistry(settings.postgres_dsn)
    try:
        counted, last_change, deadline = -1, time.monotonic(), time.monotonic() + 4 * timeout_s
        while time.monotonic() < deadline:
            n = sum(int(a.get("n", 0)) for a in (await asyncio.to_thread(registry.arm_stats, name)).values())
            if n != counted:
                counted, last_change = n, time.monotonic()
            if counted >= len(ran) or time.monotonic() - last_change > timeout_s:
                break
            await asyncio.sleep(1.0)
    finally:
        registry.close()
    return counted, len(ran)
