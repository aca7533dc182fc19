"""Credential-looking text is redacted; ordinary code is not. Fake keys are built at run time only."""

from __future__ import annotations

import pytest

from agents.redaction import PATTERNS, redact
from agents.simulator import install_simulator

A20 = "Ab3dEf6hIj9kLm2nOp5q"  # 20 mixed characters, repeated to make key-shaped fakes


def _fakes() -> dict[str, str]:
    """One fake of each kind, concatenated here so no credential-shaped literal is in the repository."""
    return {
        "openai_key": "sk-" + "proj-" + A20 + A20,
        "anthropic_key": "sk-" + "ant-" + "api03-" + A20 + A20,
        "aws_access_key": "AK" + "IA" + "ABCDEFGHIJ234567",
        "aws_secret_key": "aws_secret_access_key = " + A20 + "/" + A20[:19],
        "github_token": "gh" + "p_" + A20 + A20[:16],
        "slack_token": "xo" + "xb-" + "123456789012-" + A20,
        "google_api_key": "AI" + "za" + A20 + A20[:15],
        "stripe_key": "sk" + "_live_" + A20 + "xyz",
        "bearer_token": "Authorization: " + "Bearer " + A20 + A20,
        "jwt": "ey" + "J" + A20 + ".ey" + "J" + A20 + "." + A20,
        "private_key": "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEow" + A20 + "\n-----END " + "RSA PRIVATE KEY-----",
        "generic_secret": 'api_key = "' + A20 + '9x8y7z"',
    }


@pytest.mark.parametrize("kind", sorted(PATTERNS))
def test_each_pattern_is_caught(kind: str) -> None:
    fake = _fakes()[kind]
    text = f"please debug this:\n{fake}\nthanks"
    cleaned = redact(text)
    assert f"[REDACTED:{kind}]" in cleaned
    assert A20 not in cleaned and "please debug this:" in cleaned and cleaned.endswith("thanks")


ORDINARY = '''
def lookup(user_id: int, cache: dict[str, str]) -> str:
    key = f"user:{user_id}"
    token_count = len(key) // 4
    sha = "3f786850e387550fdab836ed7e6dc881de23001b"
    url = "https://example.com/api/v1/items?page=2&sort=desc"
    password = input("password: ")
    skip_list = ["sk-", "AKIA"]
    return cache.get(key, "") + str(token_count)
'''


def test_ordinary_code_is_left_alone() -> None:
    assert redact(ORDINARY) == ORDINARY
    assert redact("") == ""


async def test_secrets_never_reach_the_model_or_the_records() -> None:
    from agents.factory import RunnerConfig, build_runner

    install_simulator()
    fake = _fakes()["openai_key"]
    run = await build_runner(RunnerConfig()).run(
        {"task_id": "r-1", "description": f"why does {fake} fail?", "created_at": 1, "pattern": "balanced"})
    for record in (*run.outputs, run.result):
        assert fake not in str(record)
    # the simulator echoes the prompt's first words: it saw the redacted text
    assert "[REDACTED:openai_key]" in run.outputs[0]["output"]
