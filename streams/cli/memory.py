"""`agentstream sinks` and `agentstream memory search|stats` (issue 5: the memory tiers)."""

from __future__ import annotations

import json
from typing import Any

import click

from streams.settings import Settings

__all__ = ["memory", "sinks"]


@click.command()
@click.option("--no-prefetch", is_flag=True, help="Do not warm L1 with the memories of queued tasks.")
@click.pass_obj
def sinks(settings: Settings, no_prefetch: bool) -> None:
    """Run the sink processors: topics -> Redis / vectors / PostgreSQL / archive, until Ctrl-C."""
    from streams.memory.service import run_sinks

    run_sinks(settings, with_prefetch=not no_prefetch)


@click.group()
def memory() -> None:
    """Search the memory tiers and show what they hold."""


@memory.command()
@click.argument("query")
@click.option("-k", "k", type=int, default=5, show_default=True, help="How many memories.")
@click.option("--tenant", default=None, help="Only this tenant's memories.")
@click.option("--type", "event_type", default=None, help="Only this event type, e.g. TaskResult (L2 only).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per memory.")
@click.pass_obj
def search(settings: Settings, query: str, k: int, tenant: str | None, event_type: str | None, as_json: bool) -> None:
    """Find the memories closest to QUERY (L1 cache, then vectors, then full text)."""
    from dataclasses import asdict

    from sinks.base import TierUnavailable
    from streams.memory.tiers import build_retriever

    filters: dict[str, Any] = {k_: v for k_, v in (("tenant", tenant), ("event_type", event_type)) if v}
    try:
        result = build_retriever(settings).search(query, k, filters)
    except TierUnavailable as exc:
        raise click.ClickException(f"{exc} (is the stack up? `agentstream up`)") from exc
    if as_json:
        for m in result.memories:
            click.echo(json.dumps(asdict(m)))
        return
    click.echo(f"{len(result.memories)} memories from {result.tier} in {result.ms:.1f} ms")
    for n, m in enumerate(result.memories, 1):
        text = " ".join(m.text.split())
        click.echo(f"{n}. {m.score:.3f} [{m.tier}] {m.id}\n   {text[:160]}")


def collect_stats(settings: Settings) -> dict[str, Any]:
    """Rows per L3 table, vectors, L1 keys, archive objects, and retrieval hit rates per tier."""
    from streams.memory.tiers import build_archive, build_retriever

    retriever = build_retriever(settings)
    assert retriever.l1 is not None and retriever.l2 is not None and retriever.l3 is not None
    return {"l1_keys": retriever.l1.count(), "l2_vectors": retriever.l2.count(),
            "l3_rows": retriever.l3.counts(), "l4_objects": build_archive(settings).count(),
            "retrieval": retriever.stats()}


@memory.command()
@click.option("--json", "as_json", is_flag=True, help="As one JSON object.")
@click.pass_obj
def stats(settings: Settings, as_json: bool) -> None:
    """Rows, vectors, objects per tier, and retrieval hit rates per tier."""
    from sinks.base import TierUnavailable

    try:
        data = collect_stats(settings)
    except TierUnavailable as exc:
        raise click.ClickException(f"{exc} (is the stack up? `agentstream up`)") from exc
    if as_json:
        click.echo(json.dumps(data))
        return
    click.echo(f"L1 redis     {data['l1_keys']:>8} keys")
    click.echo(f"L2 vectors   {data['l2_vectors']:>8} vectors")
    for table, rows in data["l3_rows"].items():
        click.echo(f"L3 postgres  {rows:>8} rows in {table}")
    click.echo(f"L4 archive   {data['l4_objects']:>8} objects")
    r = data["retrieval"]
    click.echo(f"retrieval    {r.get('searches', 0):>8} searches")
    for tier in ("l1", "l2", "l3", "none"):
        t = r.get(tier, {})
        click.echo(f"  {tier:<5} {t.get('hits', 0):>8} hits  {t.get('rate', 0.0):6.1%}  "
                   f"mean {t.get('mean_ms', 0.0):7.2f} ms")
    click.echo(f"  time saved by L1 hits (predictive context included): {r.get('saved_ms', 0.0):.0f} ms")
