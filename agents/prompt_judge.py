"""The simulated judge: scores an agent output that ran under a prompt experiment.

Like the LLM simulator it is deterministic and plainly simulated: the success probability of a
prompt version is its metadata value `simulated_success` (default 0.5), and whether one output
succeeds is decided by a hash of its output_id, so a replay judges every output the same way and
a test can make v2 better than v1 just by giving it a higher `simulated_success`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.assignment import hash_unit

__all__ = ["judge_output"]


def judge_output(output: Mapping[str, Any], version_metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """A PromptOutcome for an AgentOutput that carries an experiment and variant; None otherwise."""
    meta = output.get("metadata") or {}
    if not meta.get("experiment") or not meta.get("variant") or output.get("status") != "ok":
        return None
    p = float(version_metadata.get("simulated_success", 0.5))
    success = hash_unit("judge", output["output_id"]) < p
    quality = 0.5 * hash_unit("quality", output["output_id"]) + (0.5 if success else 0.0)
    return {
        "outcome_id": f"judge:{output['output_id']}",
        "task_id": output["task_id"],
        "experiment": meta["experiment"],
        "variant": meta["variant"],
        "success": success,
        "quality": quality,
        "source": "judge",
        "created_at": output["created_at"],
    }
