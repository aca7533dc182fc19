"""The process harness: a child gets exactly the given settings, its own log, and is always stopped."""

from __future__ import annotations

import signal
import time

import pytest

from streams.harness import running, spawn, start_command, stop
from streams.settings import Settings


def test_a_command_runs_with_the_given_settings_and_logs_to_the_data_folder(tmp_path) -> None:
    settings = Settings(AGENTSTREAM_DATA_DIR=tmp_path).isolated("run-7")
    child = start_command(settings, "settings", log_name="logs/settings.log")
    assert child.wait(60) == 0
    log = (tmp_path / "logs" / "settings.log").read_text()
    assert "=== agentstream " in log and "-m streams settings" in log
    lines = dict(line.split(None, 1) for line in log.splitlines()[2:] if line.strip())
    assert (lines["app_id"], lines["topic_prefix"], lines["log_format"]) == ("agentstream-run-7", "run-7.", "json")


def test_a_setting_unset_here_is_unset_in_the_child_whatever_the_parent_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AGENTSTREAM_MODEL", "simulator/fast-1")  # e.g. the shell that runs a replay
    settings = Settings(AGENTSTREAM_DATA_DIR=tmp_path).model_copy(update={"model": None})
    child = start_command(settings, "settings", log_name="settings.log")
    assert child.wait(60) == 0
    lines = dict(line.split(None, 1) for line in (tmp_path / "settings.log").read_text().splitlines()[2:]
                 if line.strip())
    assert lines["model"].strip() in ("None", "")


def test_stop_terminates_and_running_stops_its_children_when_the_block_fails(tmp_path) -> None:
    # ignores SIGTERM (inherited by the exec'd sleep) and says so once it does
    stubborn = spawn(["sh", "-c", "trap '' TERM; echo ignoring; exec sleep 30"], tmp_path / "stubborn.log")
    polite = spawn(["sleep", "30"], tmp_path / "polite.log")
    with pytest.raises(RuntimeError), running(polite):
        raise RuntimeError("the block fails")
    assert polite.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 30
    while "ignoring" not in (tmp_path / "stubborn.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop(stubborn, timeout_s=0.5)
    assert stubborn.returncode == -signal.SIGKILL
