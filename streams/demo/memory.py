"""The memory part of `agentstream demo`: memories used per task, a follow-up task that recalls the
demo's results, and `agentstream memory search` finding one of them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click

from schemas import default_codec
from streams.client import dead_letter_line, make_task, submit_and_wait
from streams.memory.tiers import build_retriever
from streams.settings import Settings

__all__ = ["show_memory"]


async def _follow_up(settings: Settings, description: str, timeout_s: float) -> dict[str, Any] | None:
    task = make_task(description, task_id=f"demo-followup-{int(time.time())}")
    return (await submit_and_wait(settings, default_codec(), [task], timeout_s,
                                  on_dead=lambda tid, dead: click.echo(dead_letter_line(tid, dead)))
            ).get(task["task_id"])


def show_memory(settings: Settings, tasks: list[dict[str, Any]], results: dict[str, Any],
                timeout_s: float = 60.0) -> None:
    """Print what memory did in the demo; call it while the worker and the sinks still run."""
    used = {t["task_id"]: results[t["task_id"]]["metadata"].get("memories_used", "-")
            for t in tasks if t["task_id"] in results}
    click.echo("\n== memory\nmemories used per task: " + " ".join(f"{tid.rsplit('-', 1)[-1]}:{n}"
                                                                 for tid, n in used.items()))
    if not tasks or tasks[-1]["task_id"] not in results:
        return
    retriever = build_retriever(settings)
    target = f"TaskResult:{tasks[-1]['task_id']}"
    deadline = time.monotonic() + timeout_s
    assert retriever.l2 is not None
    while time.monotonic() < deadline:  # the sinks write in batches: wait for the last result's vector
        hits = retriever.l2.search(tasks[-1]["description"], 3)  # not through the L1 cache
        if any(h.event_id == target for h in hits):
            break
        time.sleep(0.5)
    click.echo(f'$ agentstream memory search "{tasks[-1]["description"]}"')
    result = retriever.search(tasks[-1]["description"], 3)
    for n, m in enumerate(result.memories, 1):
        click.echo(f"  {n}. {m.score:.3f} [{m.tier}] {m.id}  {' '.join(m.text.split())[:90]}")
    follow = asyncio.run(_follow_up(settings, f"Follow-up: {tasks[0]['description']}", timeout_s))
    if follow is not None:
        click.echo(f"a follow-up task on the first demo task used {follow['metadata'].get('memories_used', 0)} "
                   "memories (ids on its AgentOutput metadata `memory_ids`)")
    stats = retriever.stats()
    click.echo(f"retrieval so far: {stats.get('searches', 0)} searches, L1 hit rate "
               f"{stats.get('l1', {}).get('rate', 0.0):.0%} (predictive context), "
               f"about {stats.get('saved_ms', 0.0):.0f} ms saved")
