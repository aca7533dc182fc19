"""Fixtures for tests that run workers against the session's local stack."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator

import pytest

from streams.admin import ensure_topics
from streams.demo.run import start_worker, stop_worker
from streams.settings import Settings


@pytest.fixture
def worker_factory(isolated: Settings) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `agentstream worker` processes on this test's topics; they are stopped after the test."""
    asyncio.run(ensure_topics(isolated))
    started: list[subprocess.Popen[bytes]] = []

    def start(**overrides: object) -> subprocess.Popen[bytes]:
        settings = isolated.model_copy(update=overrides) if overrides else isolated
        proc = start_worker(settings, f"worker-{settings.app_id}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_worker(proc)
