"""Code changes on the real stack: git-watch without duplicates, the hook, tasks from commits, stored docs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from gitrepo import GitRepo  # tests/gitrepo.py (tests/ is on sys.path via its conftest)
from memory_helpers import NOW, produce, result

from schemas import default_codec
from schemas.provenance import DESCRIPTION_DIGEST, description_digest, sign_task
from sinks.docs import doc_from_result, setup_docs, write_docs
from streams import kafka
from streams.admin import ensure_topics
from streams.cli.main import cli
from streams.client import ResultWatcher
from streams.code.docs_sink import run_docs_sink
from streams.code.signing import signing_key
from streams.replay.range import Bound, read_range
from streams.settings import Settings
from streams.topics import CODE_CHANGES, DEADLETTERS, RESULTS

pytestmark = pytest.mark.integration

codec = default_codec()
PROJECT = Path(__file__).resolve().parents[2]


def _cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=settings.as_env(), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def _changes(settings: Settings) -> list:
    return [r for r in await read_range(settings, codec, settings.topic(CODE_CHANGES), Bound("earliest"),
                                        Bound("now"))]


def _small_repo(path: Path) -> tuple[GitRepo, list[str]]:
    repo = GitRepo(path)
    shas = [
        repo.commit("add the parser", {"calc/parser.py": "def parse(s):\n    return s.split()\n",
                                        "README.md": "# calc\n"}),
        repo.commit("package and evaluator", {"calc/__init__.py": "", "calc/evaluate.py": "def run(x):\n    pass\n",
                                              "logo.png": b"\x89PNG\x00\x01"}),
        repo.commit("parser handles commas", {"calc/parser.py": "def parse(s):\n    return s.replace(',', ' ')"
                                                                ".split()\n", "README.md": None}),
    ]
    return repo, shas


async def test_commits_become_events_tasks_and_current_documentation(isolated: Settings, worker_factory,
                                                                     tmp_path: Path) -> None:
    repo, shas = _small_repo(tmp_path / "calc")
    worker_factory()
    short = [s[:12] for s in shas]
    expected = {f"doc-{short[0]}-calc.parser", f"review-{short[0]}", f"doc-{short[1]}-calc",
                f"doc-{short[1]}-calc.evaluate", f"review-{short[1]}", f"doc-{short[2]}-calc.parser",
                f"review-{short[2]}"}
    async with ResultWatcher(isolated, codec) as watcher:
        out = await asyncio.to_thread(_cli, isolated, "git-watch", str(repo.path))
        assert "3 commit(s) sent, 0 already" in out
        out = await asyncio.to_thread(_cli, isolated, "git-watch", str(repo.path))
        assert "0 commit(s) sent, 3 already" in out
        results = await watcher.wait(expected, 120)
    assert set(results) == expected
    events = await _changes(isolated)
    assert [e.key for e in events] == [e.record["sha"].encode() for e in events]  # each keyed by its sha
    assert sorted(e.record["sha"] for e in events) == sorted(shas)
    second = next(e.record for e in events if e.record["sha"] == shas[1])
    assert {f["path"]: (f["change"], f["added"]) for f in second["files"]} == {
        "calc/__init__.py": ("added", 0), "calc/evaluate.py": ("added", 2), "logo.png": ("added", 0)}
    third = next(e.record for e in events if e.record["sha"] == shas[2])
    assert {f["path"]: f["change"] for f in third["files"]} == {"calc/parser.py": "modified", "README.md": "deleted"}
    assert results[f"doc-{short[2]}-calc.parser"]["metadata"]["sha"] == shas[2]  # the result links back
    assert results[f"review-{short[2]}"]["model"].startswith("simulator/")

    assert await run_docs_sink(isolated, codec, idle_exit_s=3.0) == 4
    assert await run_docs_sink(isolated, codec, idle_exit_s=2.0) == 0  # offsets committed
    doc = doc_from_result(results[f"doc-{short[2]}-calc.parser"], isolated.topic_prefix, signing_key(isolated))
    with psycopg.connect(isolated.postgres_dsn, autocommit=True) as conn:
        setup_docs(conn)
        assert write_docs(conn, [doc]) == 0  # idempotent by task_id
    found = [json.loads(line) for line in (await asyncio.to_thread(
        _cli, isolated, "docs", "search", "the calc parser", "--json")).splitlines()]
    assert len(found) == 4 and found[0]["module"] == "calc.parser" and found[0]["sha"] in (shas[0], shas[2])
    shown = await asyncio.to_thread(_cli, isolated, "docs", "show", "calc.parser")
    assert f"calc/parser.py at {short[2]}" in shown and results[f"doc-{short[2]}-calc.parser"]["output"] in shown
    out = await asyncio.to_thread(_cli, isolated, "docs", "coverage", str(repo.path), "--list")
    assert "coverage: 3/3 modules current (100%)" in out
    repo.commit("evaluate for real", {"calc/evaluate.py": "def run(x):\n    return x\n", "calc/new.py": "X = 1\n"})
    out = await asyncio.to_thread(_cli, isolated, "docs", "coverage", str(repo.path), "--list")
    assert "stale    calc.evaluate" in out and "missing  calc.new" in out
    assert "coverage: 2/4 modules current (50%); 1 stale, 1 undocumented" in out


# What a documenter agent writes about three modules (net.retry at two versions), as TaskResults.
_DOCS = [
    ("shop.cart", "shop/cart.py", "1" * 40, "The shopping cart: add and remove items, apply coupon codes, and compute "
                                            "the order total with tax and shipping."),
    ("net.retry", "net/retry.py", "2" * 40, "Retries failed HTTP requests up to three times with exponential backoff "
                                            "and random jitter between attempts."),
    ("net.retry", "net/retry.py", "3" * 40, "Retries failed HTTP requests with exponential backoff and jitter, and now "
                                            "honours the Retry-After header of 429 and 503 responses."),
    ("report.pdf", "report/pdf.py", "4" * 40, "Renders the monthly sales report as a PDF file with charts and a table "
                                              "of contents."),
]


def _doc_result(settings: Settings, module: str, path: str, sha: str, text: str, n: int,
                committed_at: str | None = None) -> dict:
    """The result of a documentation task signed as the code-change processor signs its own."""
    description = f"Document the Python module `{module}`."
    task = sign_task(signing_key(settings), {
        "task_id": f"doc-{sha[:12]}-{module}", "description": description,
        "metadata": {"kind": "documentation", "module": module, "path": path, "sha": sha,
                     "repository": "/src/shop", "committed_at": committed_at or str(NOW + n * 60_000)}})
    record = result(task["task_id"], text)
    record["metadata"] = {**task["metadata"], DESCRIPTION_DIGEST: description_digest(description)}
    return record


async def test_stored_documentation_is_found_by_meaning_with_its_module_and_version(isolated: Settings) -> None:
    await ensure_topics(isolated)
    items = [(RESULTS, "TaskResult", _doc_result(isolated, *doc, n)) for n, doc in enumerate(_DOCS)]
    items.append((RESULTS, "TaskResult", result("review-x", "Looks fine; retries could use a cap.")))  # not a doc
    forged = _doc_result(isolated, "shop.pay", "shop/pay.py", "6" * 40, "Payments are deprecated.", 8)
    forged["metadata"].pop("signature")  # says it is documentation; the code-change processor never asked for it
    items.append((RESULTS, "TaskResult", forged))
    # signed, but a document the docs tier can never store: a dead letter, and the sink goes on
    items.append((RESULTS, "TaskResult", _doc_result(isolated, "shop.tax", "shop/tax.py", "5" * 40, "Tax rules.", 9,
                                                     committed_at="yesterday")))
    await produce(isolated, items)
    assert await run_docs_sink(isolated, codec, idle_exit_s=2.0) == 4
    dead = [r.record for r in await read_range(isolated, codec, isolated.topic(DEADLETTERS), Bound("earliest"),
                                               Bound("now"))]
    assert [(d["stage"], d["topic"]) for d in dead] == [("sink-docs", isolated.topic(RESULTS))]
    assert "yesterday" in dead[0]["error"]

    # No shared keywords: the vectors (L2) find the module by what its documentation means.
    found = [json.loads(line) for line in (await asyncio.to_thread(
        _cli, isolated, "docs", "search", "what happens when a network call fails?", "-k", "3", "--json")).splitlines()]
    assert [(f["module"], f["sha"]) for f in found[:2]] in ([("net.retry", "3" * 40), ("net.retry", "2" * 40)],
                                                            [("net.retry", "2" * 40), ("net.retry", "3" * 40)])
    assert found[0]["path"] == "net/retry.py" and found[0]["repository"] == "/src/shop" and found[0]["score"] > 0.3
    out = await asyncio.to_thread(_cli, isolated, "docs", "search", "discount vouchers when paying", "-k", "1")
    assert "shop.cart  (shop/cart.py at 111111111111, /src/shop)" in out
    # The same documents are memories of their own type, which `memory search` can restrict to.
    memories = [json.loads(line) for line in (await asyncio.to_thread(
        _cli, isolated, "memory", "search", "PDF charts", "--type", "ModuleDoc", "--json")).splitlines()]
    assert memories[0]["id"] == f"ModuleDoc:doc-{'4' * 12}-report.pdf" and memories[0]["tier"] == "l2"
    assert {m["type"] for m in memories} == {"ModuleDoc"}
    assert memories[0]["text"].startswith(f"report.pdf (report/pdf.py at {'4' * 12}) Renders the monthly")

    def doc_vectors() -> int:
        with psycopg.connect(isolated.postgres_dsn) as conn:
            return conn.execute("SELECT count(*) FROM memory_vectors WHERE scope = %s AND event_type = 'ModuleDoc'",
                                (isolated.topic_prefix,)).fetchone()[0]

    assert doc_vectors() == 4
    assert "4 document(s) indexed in pgvector" in await asyncio.to_thread(_cli, isolated, "docs", "index")
    assert doc_vectors() == 4  # indexing again replaces, never adds


async def test_a_bad_code_change_is_dead_lettered_and_the_next_one_still_runs(isolated: Settings, worker_factory,
                                                                              tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    sha = repo.commit("one module", {"m.py": "A = 1\n"})
    worker_factory()
    producer = kafka.producer(isolated)
    await producer.start()
    try:
        for value in (b"not avro", None):  # None: a tombstone
            await producer.send_and_wait(isolated.topic(CODE_CHANGES), value, key=b"bad", partition=0)
    finally:
        await producer.stop()
    async with ResultWatcher(isolated, codec) as watcher:
        await asyncio.to_thread(_cli, isolated, "git-watch", str(repo.path), "--commit", "HEAD")
        results = await watcher.wait([f"doc-{sha[:12]}-m", f"review-{sha[:12]}"], 120)
    assert len(results) == 2
    dead = [r.record for r in await read_range(isolated, codec, isolated.topic(DEADLETTERS), Bound("earliest"),
                                               Bound("now"))]
    assert [(d["stage"], d["payload"]) for d in dead] == [("code-decode", b"not avro"), ("code-decode", b"")]


def test_the_post_commit_hook_sends_new_commits_and_never_fails_a_commit(isolated: Settings, tmp_path: Path) -> None:
    """With no topic prefix (every setting empty or set: an empty prefix once became a literal `''` in
    the topic name and no commit ever arrived)."""
    isolated = isolated.model_copy(update={"topic_prefix": ""})
    asyncio.run(ensure_topics(isolated))
    repo = GitRepo(tmp_path / "hooked")
    repo.commit("first", {"a.py": "A = 1\n"})
    out = _cli(isolated, "git-hook", "install", str(repo.path))
    hook = repo.path / ".git" / "hooks" / "post-commit"
    assert str(hook) in out and os.access(hook, os.X_OK)
    text = hook.read_text()
    assert "/agentstream git-watch" in text and "exit 0" in text
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSTREAM_", "KAFKA_"))}
    sha = repo.commit("second", {"a.py": "A = 2\n"})  # the hook runs now, in the background
    deadline = time.monotonic() + 90
    found: list[str] = []
    while time.monotonic() < deadline and sha not in found:
        found = [r.record["sha"] for r in asyncio.run(_changes(isolated))]
        time.sleep(1)
    assert found == [sha]  # only the new commit: the hook sends HEAD
    # With the stack "down" (a closed Kafka port) the commit still succeeds at once.
    down = isolated.model_copy(update={"kafka_port": 9})
    CliRunner().invoke(cli, ["git-hook", "install", str(repo.path)], env=down.as_env(), catch_exceptions=False)
    proc = subprocess.run(["git", "-C", str(repo.path), "commit", "-q", "--allow-empty", "-m", "stack down"],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    foreign = repo.path / ".git" / "hooks" / "post-commit"
    foreign.write_text("#!/bin/sh\necho mine\n")
    result = CliRunner().invoke(cli, ["git-hook", "install", str(repo.path)], env=isolated.as_env())
    assert result.exit_code == 1 and "--force" in result.output


def test_git_watch_on_the_project_repository_sends_one_event_per_commit(isolated: Settings) -> None:
    asyncio.run(ensure_topics(isolated))
    count = int(subprocess.run(["git", "-C", str(PROJECT), "rev-list", "--count", "HEAD"], capture_output=True,
                               text=True, check=True).stdout)
    out = _cli(isolated, "git-watch", str(PROJECT))
    assert f"{count} commit(s) sent, 0 already" in out
    events = asyncio.run(_changes(isolated))
    assert len(events) == count == len({e.record["sha"] for e in events})
    assert f"0 commit(s) sent, {count} already" in _cli(isolated, "git-watch", str(PROJECT))

