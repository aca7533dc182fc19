"""Code-change parts without a stack: git reading, tasks from a change, documentation records."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from gitrepo import GitRepo  # tests/gitrepo.py (tests/ is on sys.path via its conftest)
from redaction_corpus import secrets

from sinks.docs import doc_from_result
from streams.code.git import GitError, commit_shas, module_name, read_commit
from streams.code.hook import _hook_text
from streams.code.tasks import file_patch, tasks_for_change
from streams.settings import Settings


def test_module_names() -> None:
    assert module_name("streams/code/git.py") == "streams.code.git"
    assert module_name("pkg/__init__.py") == "pkg" and module_name("README.md") is None


def test_commits_are_read_with_kinds_counts_renames_and_a_cut_patch(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    body = "".join(f"line {n}\n" for n in range(40))
    first = repo.commit("first\n\nlonger body", {"a.py": body, "b.txt": "b\n", "img.bin": b"\x00\x01\x02"})
    repo.git("mv", "a.py", "c.py")
    second = repo.commit("rename and edit", {"c.py": body + "one more\n", "b.txt": None})
    assert commit_shas(repo.path) == [first, second]
    assert commit_shas(repo.path, since=first) == [second] and commit_shas(repo.path, only="HEAD") == [second]
    one = read_commit(repo.path, first, "repo", patch_limit=100_000)
    assert one["message"] == "first\n\nlonger body" and one["author"] == "Test Author <author@example.invalid>"
    assert {f["path"]: (f["change"], f["added"], f["removed"]) for f in one["files"]} == {
        "a.py": ("added", 40, 0), "b.txt": ("added", 1, 0), "img.bin": ("added", 0, 0)}
    assert not one["patch_truncated"] and "+line 39" in one["patch"]
    two = read_commit(repo.path, second, "repo", patch_limit=50)
    assert {f["path"]: (f["change"], f["added"], f["removed"]) for f in two["files"]} == {
        "c.py": ("renamed", 1, 0), "b.txt": ("deleted", 0, 1)}
    assert two["patch_truncated"] and len(two["patch"]) == 50
    with pytest.raises(GitError):
        commit_shas(repo.path, since="no-such-rev")


def test_a_commit_is_read_with_its_message_and_patch_redacted(tmp_path: Path) -> None:
    """Secrets in a commit never reach code.changes, even one that straddles the patch cut."""
    (_, in_message, secret), (_, in_file, secret2) = secrets(random.Random(5))[:2]
    repo = GitRepo(tmp_path / "r")
    filler = "x = 1\n" * 10
    sha = repo.commit(f"add settings\n\n{in_message}", {"settings.py": filler + in_file + "\n"})
    patch = repo.git("show", "--format=", "--patch", sha)
    cut = patch.index(secret2) + len(secret2) // 2  # the cut falls in the middle of the secret
    change = read_commit(repo.path, sha, "repo", patch_limit=cut)
    assert secret not in change["message"] and "[REDACTED:" in change["message"]
    assert secret2[:10] not in change["patch"] and len(change["patch"]) <= cut and change["patch_truncated"]
    whole = read_commit(repo.path, sha, "repo", patch_limit=100_000)
    assert secret2 not in whole["patch"] and "+x = 1" in whole["patch"] and "[REDACTED:" in whole["patch"]


def _change() -> dict:
    patch = ("diff --git a/pkg/a.py b/pkg/a.py\n+x = 1\n"
             "diff --git a/pkg/__init__.py b/pkg/__init__.py\n+\n"
             "diff --git a/gone.py b/gone.py\n-y\n")
    return {"sha": "abcdef1234567890", "repository": "/r", "author": "A <a@x>", "committed_at": 1000,
            "message": "subject\n\nbody", "patch": patch, "patch_truncated": False, "created_at": 1,
            "files": [{"path": "pkg/a.py", "change": "modified", "added": 1, "removed": 0},
                      {"path": "pkg/__init__.py", "change": "added", "added": 1, "removed": 0},
                      {"path": "gone.py", "change": "deleted", "added": 0, "removed": 1},
                      {"path": "notes.md", "change": "added", "added": 3, "removed": 0}]}


def test_a_change_asks_for_docs_per_live_module_and_one_review_with_stable_ids() -> None:
    tasks = tasks_for_change(_change())
    assert [t["task_id"] for t in tasks] == ["doc-abcdef123456-pkg.a", "doc-abcdef123456-pkg", "review-abcdef123456"]
    assert [t["task_id"] for t in tasks_for_change(_change())] == [t["task_id"] for t in tasks]
    doc, _, review = tasks
    assert doc["capability"] == "documentation" and "+x = 1" in doc["description"] and "-y" not in doc["description"]
    assert doc["metadata"] == {"sha": "abcdef1234567890", "repository": "/r", "committed_at": "1000",
                               "source": "code.changes", "kind": "documentation", "module": "pkg.a",
                               "path": "pkg/a.py"}
    assert review["capability"] == "review" and review["metadata"]["kind"] == "review"
    assert "subject" in review["description"] and "notes.md (added +3 -0)" in review["description"]
    assert file_patch(_change()["patch"], "missing.py") == ""


def test_only_ok_documentation_results_become_documents() -> None:
    meta = {"kind": "documentation", "module": "pkg.a", "path": "pkg/a.py", "sha": "s", "repository": "/r",
            "committed_at": "1000"}
    result = {"task_id": "doc-s-pkg.a", "status": "ok", "output": "It parses.", "model": "m", "metadata": meta}
    doc = doc_from_result(result, "scope.")
    assert (doc.module, doc.sha, doc.committed_at_ms, doc.content, doc.scope) == ("pkg.a", "s", 1000, "It parses.",
                                                                                 "scope.")
    assert doc_from_result({**result, "status": "failed"}, "") is None
    assert doc_from_result({**result, "metadata": {"kind": "review"}}, "") is None


def test_the_hook_runs_in_the_background_and_always_exits_zero(tmp_path: Path) -> None:
    settings = Settings(AGENTSTREAM_DATA_DIR=tmp_path / "data", AGENTSTREAM_TOPIC_PREFIX="p.",
                        KAFKA_BOOTSTRAP_SERVERS="k:9092")
    text = _hook_text(settings, tmp_path / "repo", tmp_path / "log", "/opt/bin/agentstream")
    assert text.startswith("#!/bin/sh") and text.rstrip().endswith("exit 0")
    assert "/opt/bin/agentstream git-watch" in text and "--commit HEAD" in text and ") </dev/null" in text
    assert "then KAFKA_BOOTSTRAP_SERVERS=k:9092; fi" in text and f"AGENTSTREAM_DATA_DIR={tmp_path}/data" in text


def test_the_hook_keeps_every_value_as_text_when_bash_runs_it(tmp_path: Path) -> None:
    """A topic prefix or folder holding `$(...)`, backquotes or quotes reaches git-watch verbatim and runs nothing."""
    import os
    import subprocess
    import time

    ran = [tmp_path / f"ran{i}" for i in range(4)]
    prefix = f"p.$(touch {ran[0]}).`touch {ran[1]}`.x'$(touch {ran[2]})'y."
    data_dir = tmp_path / f"data$(touch {ran[3]})"
    settings = Settings(AGENTSTREAM_DATA_DIR=data_dir, AGENTSTREAM_TOPIC_PREFIX=prefix,
                        KAFKA_BOOTSTRAP_SERVERS="k:9092")
    seen = tmp_path / "seen"
    fake = tmp_path / "agentstream"  # stands in for the real command: writes what it was given
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$AGENTSTREAM_TOPIC_PREFIX" "$AGENTSTREAM_DATA_DIR" '
                    '"$KAFKA_BOOTSTRAP_SERVERS" "$1" > "$SEEN.tmp" && mv "$SEEN.tmp" "$SEEN"\n')
    fake.chmod(0o755)
    hook = tmp_path / "post-commit"
    hook.write_text(_hook_text(settings, tmp_path / "repo", tmp_path / "log", str(fake)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSTREAM_", "KAFKA_"))}
    env |= {"SEEN": str(seen), "KAFKA_BOOTSTRAP_SERVERS": "already:1"}  # a value already set wins
    assert subprocess.run(["bash", str(hook)], env=env, cwd=tmp_path, timeout=30).returncode == 0
    deadline = time.monotonic() + 20
    while not seen.exists() and time.monotonic() < deadline:  # the hook runs git-watch in the background
        time.sleep(0.05)
    assert seen.read_text().splitlines() == [prefix, str(data_dir.resolve()), "already:1", "git-watch"]
    assert not any(p.exists() for p in ran)
