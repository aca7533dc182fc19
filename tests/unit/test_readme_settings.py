"""README.md says what runs: its settings table is held to the settings class (every variable listed, each
default equal); its "Using it" block is run by tests/integration/test_readme.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from readme_helpers import RULES, settings_table, using_it_commands

from streams.settings import Settings

_UNSET = {"(none)", "(embedded)"}


def _same(cell: str, default: Any) -> bool:
    if cell in _UNSET:
        return default is None or default == ""
    text = cell.strip("`")
    if isinstance(default, bool):
        return text == str(default).lower()
    if isinstance(default, int | float):
        try:
            return float(text) == float(default)
        except ValueError:
            return False
    return text == str(default)


def test_every_setting_is_in_the_readme_with_its_default() -> None:
    table = settings_table()
    fields = {field.alias: field.default for field in Settings.model_fields.values()}
    assert sorted(set(fields) - set(table)) == [], "settings missing from README.md's table"
    assert sorted(set(table) - set(fields)) == [], "README.md lists variables that are not settings"
    wrong = {name: (table[name], fields[name]) for name in fields
             if name not in RULES and not _same(table[name], fields[name])}
    assert wrong == {}, "README default (left) differs from streams/settings.py (right)"
    assert all(table[name] == rule for name, rule in RULES.items())


def test_the_rules_the_readme_states_hold() -> None:
    assert Settings(AGENTSTREAM_KAFKA_BROKERS=1).replication_factor == 1
    assert Settings(AGENTSTREAM_KAFKA_BROKERS=2).replication_factor == 2
    assert Settings(AGENTSTREAM_KAFKA_BROKERS=5).replication_factor == 3


def test_the_table_check_would_catch_a_wrong_default() -> None:
    assert not _same("`simulator/balanced-1`", None) and _same("(none)", None) and _same("19093", 19093)
    assert not _same("19093", 19094) and _same("true", True) and not _same("false", True)
    assert _same("`.agentstream`", Path(".agentstream")) and _same("0.35", 0.35)


def test_the_using_it_block_has_the_commands_a_user_types() -> None:
    commands = using_it_commands()
    assert commands[0] == ["up"] and commands[-1] == ["down"] and ["worker"] in commands
    assert ["submit", "add retries to the HTTP client", "--wait"] in commands
