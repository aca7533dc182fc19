"""README.md's "Using it" block, run as written, in order, on a stack of its own (it starts with `up` and
ends with `down`, so not on the session's stack): every command exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from readme_helpers import using_it_commands

from streams.devstack import LocalStack, free_ports
from streams.settings import Settings

# A stack of its own, every README command in turn: `make test-slow` (and before a release).
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _env(data_dir: Path) -> dict[str, str]:
    kafka, controller, postgres, redis, s3 = free_ports(5)
    own = {"AGENTSTREAM_DATA_DIR": str(data_dir), "AGENTSTREAM_KAFKA_PORT": str(kafka),
           "AGENTSTREAM_KAFKA_CONTROLLER_PORT": str(controller), "AGENTSTREAM_POSTGRES_PORT": str(postgres),
           "AGENTSTREAM_REDIS_PORT": str(redis), "AGENTSTREAM_S3_PORT": str(s3), "AGENTSTREAM_LOG_FORMAT": "json"}
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith("AGENTSTREAM_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL",
                                                                   "REDIS_URL", "S3_ENDPOINT_URL", "WEAVIATE_URL")}
    return {**inherited, **own}


def _wait_for(log: Path, text: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in (log.read_text(errors="replace") if log.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} not in {log} within {timeout_s:g} s"
        time.sleep(0.5)


def test_every_command_of_the_using_it_block_runs(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    data_dir.mkdir()
    tmp_path.chmod(0o755)
    data_dir.chmod(0o755)  # the embedded PostgreSQL runs as an unprivileged user and must traverse it
    env = _env(data_dir)
    # The block submits `tasks.jsonl` from the current folder: a user writes one; so does the test.
    (tmp_path / "tasks.jsonl").write_text("\n".join(json.dumps({"description": f"task {n}"}) for n in range(4)))
    commands = using_it_commands()
    worker: subprocess.Popen[bytes] | None = None
    worker_log = tmp_path / "worker.log"
    ran = []
    try:
        for args in commands:
            if args == ["worker"]:  # it runs until Ctrl-C: in the background, like a terminal of its own
                worker = subprocess.Popen([sys.executable, "-m", "streams", *args], cwd=tmp_path, env=env,
                                          stdout=worker_log.open("wb"), stderr=subprocess.STDOUT,
                                          start_new_session=True)
                _wait_for(worker_log, "task stage started")
                ran.append(args)
                continue
            if args == ["down"] and worker is not None:  # Ctrl-C in the worker's terminal first
                worker.send_signal(signal.SIGINT)
                assert worker.wait(60) == 0, worker_log.read_text()[-3000:]
            proc = subprocess.run([sys.executable, "-m", "streams", *args], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300, check=False)
            assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
            assert "Traceback" not in proc.stdout + proc.stderr, (args, proc.stderr[-2000:])
            ran.append(args)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        LocalStack(Settings(_env_file=None, **{k: v for k, v in env.items() if k.startswith("AGENTSTREAM_")})).down()
    assert ran == commands and len(ran) >= 8
