"""Redaction: recall on secrets of many shapes, false positives on harmless look-alikes, and its limits.

The corpus (tests/redaction_corpus.py) is generated at run time from a seed printed with the figures,
so a miss can be reproduced with REDACTION_SEED=<seed>.
"""

from __future__ import annotations

import os
import random
import time

from redaction_corpus import harmless, secrets

from agents import redaction
from agents.redaction import CACHE_MAX_CHARS, redact, redact_task
from agents.simulator import install_simulator

SEED = int(os.environ.get("REDACTION_SEED") or time.time_ns() % 1_000_000)


def _leaks(cleaned: str, secret: str, window: int = 10) -> bool:
    """Some `window` characters of the secret survived (a partial redaction leaks too)."""
    return any(secret[i:i + window] in cleaned for i in range(0, max(1, len(secret) - window + 1)))


def test_recall_and_false_positive_rate() -> None:
    rng = random.Random(SEED)
    corpus, clean = secrets(rng), harmless(rng)
    shapes = {kind for kind, _, _ in corpus}
    missed = [kind for kind, text, secret in corpus if _leaks(redact(text), secret)]
    flagged = [what for what, text in clean if redact(text) != text]
    recall = 1 - len(missed) / len(corpus)
    fp_rate = len(flagged) / len(clean)
    print(f"\nredaction (seed {SEED}): recall {recall:.1%} on {len(corpus)} secrets of {len(shapes)} shapes "
          f"(missed: {missed or 'none'}); false positives {fp_rate:.1%} on {len(clean)} harmless texts "
          f"(flagged: {flagged or 'none'})")
    assert len(shapes) >= 60 and len(clean) >= 50
    assert recall >= 0.95, missed
    assert fp_rate <= 0.02, flagged


def test_only_the_secret_goes_and_twice_is_once() -> None:
    """The label and the text around a secret stay; redacting a redacted text changes nothing."""
    rng = random.Random(SEED)
    for kind, text, _secret in secrets(rng):
        framed = f"BEFORE {text} AFTER"
        cleaned = redact(framed)
        assert cleaned.startswith("BEFORE ") and cleaned.endswith(" AFTER") and "[REDACTED:" in cleaned, kind
        assert redact(cleaned) == cleaned, kind


def test_long_texts_are_redacted_but_not_cached() -> None:
    rng = random.Random(SEED)
    _kind, text, secret = secrets(rng)[0]
    long = "x " * CACHE_MAX_CHARS + text
    before = redaction._cached.cache_info().currsize
    assert secret not in redact(long)
    assert redaction._cached.cache_info().currsize == before
    redact(text + " short and new " + str(SEED))
    assert redaction._cached.cache_info().currsize == min(before + 1, redaction._cached.cache_info().maxsize)


def test_a_task_is_redacted_in_its_description_and_metadata() -> None:
    rng = random.Random(SEED)
    (_, text_a, secret_a), (_, text_b, secret_b) = secrets(rng)[:2]
    task = {"task_id": "t-1", "description": f"debug: {text_a}", "metadata": {"env": text_b, "n": "1"},
            "created_at": 1}
    clean = redact_task(task)
    assert secret_a not in clean["description"] and secret_b not in clean["metadata"]["env"]
    assert clean["metadata"]["n"] == "1" and clean["task_id"] == "t-1"
    assert secret_a in task["description"]  # the caller's record is not changed


async def test_secrets_never_reach_the_model_or_the_records() -> None:
    """Description and metadata: redacted before memory recall, the model, the outputs and the result."""
    from agents.factory import RunnerConfig, build_runner

    install_simulator()
    rng = random.Random(SEED)
    corpus = {kind: (text, secret) for kind, text, secret in secrets(rng)}
    (text, secret), (meta_text, meta_secret) = corpus["openai project key"], corpus[".env PASSWORD"]
    recalled: list[dict] = []

    class Recorder:
        async def recall(self, task: dict) -> list[dict]:
            recalled.append(task)
            return []

    runner = build_runner(RunnerConfig())
    runner.memory = Recorder()
    run = await runner.run({"task_id": "r-1", "description": f"why does {text} fail?", "created_at": 1,
                            "pattern": "balanced", "metadata": {"ticket": meta_text}})
    assert secret not in str(recalled) and meta_secret not in str(recalled)
    for record in (*run.outputs, run.result):
        assert secret not in str(record) and meta_secret not in str(record)
    assert "[REDACTED:" in run.outputs[0]["output"]  # the simulator echoes the prompt: it saw the redacted text
    assert "[REDACTED:" in run.result["metadata"]["ticket"]
