"""`agentstream git-watch`, `git-hook install`, and `docs show|search|coverage|sink|index`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from streams.settings import Settings

if TYPE_CHECKING:
    from sinks.vectors import VectorTier

__all__ = ["docs", "git_hook", "git_watch"]

_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command("git-watch")
@click.argument("path", type=_DIR, default=".")
@click.option("--since", default=None, help="Only commits after this revision (REV..HEAD); default: all of HEAD.")
@click.option("--commit", "only", default=None, help="Only this one commit (the post-commit hook uses HEAD).")
@click.option("--patch-limit", type=int, default=20_000, show_default=True, help="Characters of patch kept.")
@click.pass_obj
def git_watch(settings: Settings, path: Path, since: str | None, only: str | None, patch_limit: int) -> None:
    """Produce a CodeChange per commit of the repository at PATH to code.changes, keyed by sha.

    Shas already on code.changes for this repository are skipped, so running it again sends nothing twice.
    """
    from schemas import default_codec
    from streams.code.git import GitError
    from streams.code.watch import watch_repository

    try:
        report = asyncio.run(watch_repository(settings, default_codec(), path, since=since, only=only,
                                              patch_limit=patch_limit))
    except (GitError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{report.repository}: {len(report.produced)} commit(s) sent, "
               f"{len(report.skipped)} already on {settings.topic('code.changes')}")


@click.group("git-hook")
def git_hook() -> None:
    """Manage the git post-commit hook that sends each new commit to code.changes."""


@git_hook.command("install")
@click.argument("path", type=_DIR, default=".")
@click.option("--force", is_flag=True, help="Replace a post-commit hook not written by agentstream.")
@click.pass_obj
def install(settings: Settings, path: Path, force: bool) -> None:
    """Install the post-commit hook in the repository at PATH (it never fails a commit)."""
    from streams.code.git import GitError
    from streams.code.hook import install_hook

    try:
        hook = install_hook(settings, path, force=force)
    except (GitError, FileExistsError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"installed {hook}")


@click.group()
def docs() -> None:
    """Module documentation written by the documenter agent for code changes."""


def _connect(settings: Settings):
    import psycopg

    from sinks.docs import setup_docs

    try:
        conn = psycopg.connect(settings.postgres_dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"PostgreSQL is not reachable (is the stack up?): {exc}") from exc
    setup_docs(conn)
    return conn


@docs.command()
@click.argument("module")
@click.option("--repository", type=_DIR, default=None, help="Only documentation of this repository.")
@click.pass_obj
def show(settings: Settings, module: str, repository: Path | None) -> None:
    """Print the latest documentation of MODULE (e.g. streams.client)."""
    from sinks.docs import latest_doc
    from streams.code.git import repo_root

    repo = str(repo_root(repository)) if repository else None
    with _connect(settings) as conn:
        doc = latest_doc(conn, settings.topic_prefix, module, repo)
    if doc is None:
        raise click.ClickException(f"no documentation for {module!r} yet")
    click.echo(f"# {doc.module}  ({doc.path} at {doc.sha[:12]}, {doc.model})\n\n{doc.content}")


def _vectors(settings: Settings) -> VectorTier:
    """The L2 tier the documents are indexed in (pgvector, or Weaviate when WEAVIATE_URL is set)."""
    from streams.memory.tiers import build_tiers

    return build_tiers(settings, {"vectors"})["vectors"]  # type: ignore[return-value]


@docs.command()
@click.argument("query")
@click.option("-k", "k", type=int, default=5, show_default=True, help="How many documents.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per document.")
@click.pass_obj
def search(settings: Settings, query: str, k: int, as_json: bool) -> None:
    """Find the module documents closest in meaning to QUERY (L2 vectors), each with its module and version.

    The same documents are memories of type ModuleDoc: `agentstream memory search QUERY --type ModuleDoc`.
    """
    from sinks.base import TierUnavailable
    from sinks.docs import search_docs

    vectors = _vectors(settings)
    try:
        with _connect(settings) as conn:
            found = search_docs(conn, vectors, settings.topic_prefix, query, k)
    except TierUnavailable as exc:
        raise click.ClickException(f"{exc} (is the stack up?)") from exc
    finally:
        vectors.close()
    for n, (doc, score) in enumerate(found, 1):
        if as_json:
            click.echo(json.dumps({"module": doc.module, "path": doc.path, "sha": doc.sha, "repository": doc.repository,
                                   "committed_at": doc.committed_at_ms, "task_id": doc.task_id, "score": score,
                                   "content": doc.content}))
        else:
            text = " ".join(doc.content.split())
            click.echo(f"{n}. {score:.3f} {doc.module}  ({doc.path} at {doc.sha[:12]}, {doc.repository})\n"
                       f"   {text[:160]}")
    if not found and not as_json:
        click.echo("no documentation found (is `agentstream docs sink` running?)")


@docs.command()
@click.pass_obj
def index(settings: Settings) -> None:
    """Embed every stored document into the L2 vector tier again (after a backend change, or for old rows)."""
    from sinks.docs import all_docs, index_docs

    vectors = _vectors(settings)
    try:
        with _connect(settings) as conn:
            done = index_docs(vectors, all_docs(conn, settings.topic_prefix))
    finally:
        vectors.close()
    click.echo(f"{done} document(s) indexed in {vectors.store.name}")


@docs.command()
@click.argument("path", type=_DIR, default=".")
@click.option("--list", "listing", is_flag=True, help="One line per module: current, stale or missing.")
@click.pass_obj
def coverage(settings: Settings, path: Path, listing: bool) -> None:
    """Share of the Python modules of the repository at PATH whose documentation is current.

    Current: documented at the commit that last changed the module, or at a later one.
    """
    from sinks.docs import documented_shas
    from streams.code.coverage import module_coverage

    with _connect(settings) as conn:
        report = module_coverage(path, lambda repo: documented_shas(conn, settings.topic_prefix, repo))
    if listing:
        for module, state in sorted(report.states.items()):
            click.echo(f"{state:<8} {module}")
    click.echo(f"coverage: {report.current}/{report.total} modules current ({report.share:.0%}); "
               f"{report.stale} stale, {report.total - report.current - report.stale} undocumented")


@docs.command()
@click.option("--idle-exit", type=float, default=None, help="Stop after this many seconds with no new result.")
@click.pass_obj
def sink(settings: Settings, idle_exit: float | None) -> None:
    """Store documentation results (agent.results) in PostgreSQL and index them in L2, until Ctrl-C (or --idle-exit)."""
    from schemas import default_codec
    from streams.code.docs_sink import run_docs_sink

    try:
        written = asyncio.run(run_docs_sink(settings, default_codec(), idle_exit_s=idle_exit))
    except KeyboardInterrupt:
        sys.exit(0)
    click.echo(f"{written} document(s) stored")
