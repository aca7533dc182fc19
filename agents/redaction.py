"""Redact text that looks like a credential before it reaches a model, a topic, a log or storage.

Each pattern is anchored on a provider's documented key shape (prefix and length), so ordinary code
(identifiers, hashes in URLs, base64 in tests) is left alone; a generic `secret = "..."` assignment
is caught only when the value is long and mixed like a key.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["PATTERNS", "redact"]

# name -> pattern; the whole match (or the `secret` group when present) is replaced.
PATTERNS: dict[str, re.Pattern[str]] = {
    "private_key": re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    ),
    "anthropic_key": re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    "openai_key": re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    "aws_secret_key": re.compile(
        r"(?i)(?P<label>aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?)(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
    ),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})"),
    "slack_token": re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"),
    "stripe_key": re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,}"),
    "bearer_token": re.compile(r"(?i)(?P<label>\bbearer\s+)(?P<secret>[A-Za-z0-9_\-\.=~+/]{20,})"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"),
    "generic_secret": re.compile(
        r"(?i)(?P<label>\b(?:api_?key|secret|token|password|passwd)[\"']?\s*[:=]\s*[\"'])"
        r"(?P<secret>(?=[^\"'\s]*\d)(?=[^\"'\s]*[A-Za-z])[^\"'\s]{24,})(?=[\"'])"
    ),
}


# Every pattern above needs one of these (case aside): text without any is returned untouched after
# one scan instead of twelve. Keep it in step with PATTERNS (a test checks each pattern's examples).
_MAYBE = re.compile(r"(?i)private key|sk-|akia|asia|abia|acca|secret|gh[pousr]_|github_pat_|xox|aiza|_live_|_test_"
                    r"|bearer|eyj|api_?key|token|passw")


def _replace(name: str) -> object:
    def repl(match: re.Match[str]) -> str:
        if "secret" in match.re.groupindex:
            return f"{match.group('label')}[REDACTED:{name}]"
        return f"[REDACTED:{name}]"
    return repl


@lru_cache(maxsize=4096)  # system prompts and a task's description recur on every step
def redact(text: str) -> str:
    """`text` with every credential-looking span replaced by `[REDACTED:<kind>]`."""
    if not text or not _MAYBE.search(text):
        return text
    for name, pattern in PATTERNS.items():
        text = pattern.sub(_replace(name), text)  # type: ignore[arg-type]
    return text
