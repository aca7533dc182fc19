"""The demo's swarm summary: per pattern, how many tasks, their steps, agents and costs."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["pattern_summary"]


def pattern_summary(results: dict[str, dict[str, Any]]) -> None:
    """One line per swarm pattern seen in the results (fast, balanced, quality)."""
    by_pattern: dict[str, list[dict[str, Any]]] = {}
    for r in results.values():
        by_pattern.setdefault(r["metadata"].get("pattern", "fast"), []).append(r)
    click.echo("\nswarm patterns:")
    for pattern in ("fast", "balanced", "quality"):
        rows = by_pattern.get(pattern, [])
        if not rows:
            continue
        example = rows[0]["metadata"].get("agents", "")
        cost = sum(r["cost_usd"] for r in rows) / len(rows)
        click.echo(f"  {pattern:<9} {len(rows):>3} tasks, {rows[0]['steps']} steps each ({example}), "
                   f"mean cost ${cost:.7f}")
