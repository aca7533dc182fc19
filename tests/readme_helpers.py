"""README.md read by the tests that hold it to what runs: its settings table and its "Using it" commands."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

# Defaults that are not one value: the README says the rule, the test checks the rule.
RULES = {"AGENTSTREAM_REPLICATION_FACTOR": "min(3, `AGENTSTREAM_KAFKA_BROKERS`)"}


def settings_table() -> dict[str, str]:
    """variable -> default cell, from the README's Settings table (a row may list several, comma separated)."""
    section = README.read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z0-9_]+)`", cells[0])
        defaults = [cells[1]] if cells[1] in RULES.values() else [d.strip() for d in cells[1].split(",")]
        assert len(names) == len(defaults), f"one default per variable: {line}"
        rows.update(zip(names, defaults, strict=True))
    return rows


def using_it_commands() -> list[list[str]]:
    """Every `agentstream ...` command of the README's "Using it" block, as argv lists, in order."""
    section = README.read_text().split("\n## Using it\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "agentstream":
            commands.append(words[1:])
    return commands
