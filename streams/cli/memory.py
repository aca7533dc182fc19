"""`agentstream sinks` and `agentstream memory search|stats` (issue 5: the memory tiers), `memory verify|restore`
(issue 14: the tiers against the archive)."""

from __future__ import annotations

import json
from typing import Any

import click

from streams.settings import Settings

__all__ = ["memory", "sinks"]


@click.command()
@click.option("--no-prefetch", is_flag=True, help="Do not warm L1 with the memories of queued tasks.")
@click.option("--prefetch-only", is_flag=True,
              help="Run only the prefetcher (no sink writes): to give it processes of its own, apart from the writers.")
@click.pass_obj
def sinks(settings: Settings, no_prefetch: bool, prefetch_only: bool) -> None:
    """Run the sink processors: topics -> Redis / vectors / PostgreSQL / archive, until Ctrl-C.

    The prefetcher searches each queued task's memories before a worker reaches it, so the worker's
    own recall is one Redis read (the search's embedding and queries are spent here, not in the worker).
    """
    from streams.memory.service import run_sinks

    if prefetch_only and (no_prefetch or settings.memory_context_k <= 0):
        raise click.UsageError("--prefetch-only with --no-prefetch or AGENTSTREAM_MEMORY_CONTEXT_K=0 leaves "
                               "nothing to run")
    run_sinks(settings, with_prefetch=not no_prefetch, with_writers=not prefetch_only)


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


def _ms(text: str | None) -> int | None:
    """An ISO date or time (UTC unless it says otherwise) as epoch milliseconds."""
    from datetime import UTC, datetime

    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: an ISO date or time, e.g. 2026-11-30 or 2026-11-30T12:00") from exc
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def _integrity(settings: Settings, tiers: tuple[str, ...], start: str | None, end: str | None,
               repair: bool) -> list[Any]:
    from schemas import default_codec
    from sinks.base import TierUnavailable
    from streams.memory.integrity import TIERS, verify
    from streams.memory.service import MEMORY_TOPICS
    from streams.memory.tiers import build_archive, build_tiers, router

    names = tiers or tuple(TIERS)
    built = build_tiers(settings, {TIERS[n] for n in names})
    try:
        return verify(settings, {n: built[TIERS[n]] for n in names}, build_archive(settings), router(settings),
                      default_codec(), MEMORY_TOPICS, _ms(start), _ms(end), repair=repair)
    except TierUnavailable as exc:
        raise click.ClickException(f"{exc} (is the stack up? `agentstream up`)") from exc
    finally:
        for tier in built.values():
            tier.close()


def _print_reports(reports: list[Any], as_json: bool, verb: str = "") -> None:
    for r in reports:
        if as_json:
            click.echo(json.dumps({"tier": r.tier, "checked": r.checked, "missing": r.missing, "changed": r.changed,
                                   "extra": r.extra}))
            continue
        click.echo(f"{r.tier}: {r.checked} checked, {len(r.missing)} missing, {len(r.changed)} changed, "
                   f"{len(r.extra)} extra{verb if (r.missing or r.changed) else ''}")
        for label, ids in (("missing", r.missing), ("changed", r.changed), ("extra", r.extra)):
            for event_id in ids[:50]:
                click.echo(f"  {label:<8} {event_id}")
            if len(ids) > 50:
                click.echo(f"  ... and {len(ids) - 50} more {label}")


_TIER = click.option("--tier", "tiers", type=click.Choice(["l1", "l2", "l3"]), multiple=True,
                     help="The tier(s) to check (repeatable); default: all three.")
_FROM = click.option("--from", "start", default=None, help="Only events created at or after this (ISO, UTC).")
_TO = click.option("--to", "end", default=None, help="Only events created before this (ISO, UTC).")


@memory.command("verify")
@_TIER
@_FROM
@_TO
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tier.")
@click.pass_obj
def verify_command(settings: Settings, tiers: tuple[str, ...], start: str | None, end: str | None,
                   as_json: bool) -> None:
    """Compare each tier with the L4 archive (event ids and content hashes): missing, changed, extra.
    Anything found raises a memory_integrity alert and exits 1."""
    import asyncio

    from streams.risk.service import publish_alert

    reports = _integrity(settings, tiers, start, end, repair=False)
    _print_reports(reports, as_json)
    found = [r for r in reports if not r.clean]
    if not found:
        return
    details = {f"{r.tier}_{what}": str(len(getattr(r, what)))
               for r in found for what in ("missing", "changed", "extra")}
    details |= {"range": f"{start or 'start'} .. {end or 'now'}", "restore": "agentstream memory restore --tier ..."}
    summary = "memory tiers differ from the archive: " + ", ".join(
        f"{r.tier} {len(r.missing)} missing / {len(r.changed)} changed / {len(r.extra)} extra" for r in found)
    asyncio.run(publish_alert(settings, "memory_integrity", "critical", "*", summary, details))
    raise click.exceptions.Exit(1)


@memory.command("restore")
@_TIER
@_FROM
@_TO
@click.pass_obj
def restore_command(settings: Settings, tiers: tuple[str, ...], start: str | None, end: str | None) -> None:
    """Rewrite the missing and changed events of each tier from the L4 archive, through the tier's own
    idempotent writer (running it again changes nothing), then verify again."""
    before = _integrity(settings, tiers, start, end, repair=True)
    _print_reports(before, False, verb=": written again from the archive")
    after = _integrity(settings, tiers, start, end, repair=False)
    left = [r for r in after if r.missing or r.changed]
    for r in after:
        click.echo(f"after restore, {r.tier}: {len(r.missing)} missing, {len(r.changed)} changed, "
                   f"{len(r.extra)} extra (extras are never deleted)")
    if left:
        raise click.ClickException("some events could not be restored: " + ", ".join(r.tier for r in left))
