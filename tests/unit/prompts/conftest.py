"""Prints the experiment simulation figures at the end of the test run (whatever `-s` says)."""

from __future__ import annotations

from typing import Any

import pytest

FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("prompt experiment simulations")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def figures() -> list[str]:
    """Lines to print in the terminal summary."""
    return FIGURES
