"""`agentstream prompt ...` and `agentstream experiment ...`: the prompt registry and A/B experiments."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from streams.settings import Settings

__all__ = ["experiment", "prompt"]


@contextmanager
def _registry(settings: Settings) -> Iterator[object]:
    import psycopg

    from agents.prompt_registry import PromptRegistry, RegistryError
    from agents.prompt_templates import RenderLimits, TemplateRenderError

    registry = PromptRegistry(settings.postgres_dsn,
                              limits=RenderLimits(settings.prompt_max_chars, settings.prompt_render_timeout_s))
    try:
        yield registry.migrate()
    except (RegistryError, TemplateRenderError) as exc:
        raise click.ClickException(str(exc)) from exc
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot reach PostgreSQL (have you run `agentstream up`?): {exc}") from exc
    finally:
        registry.close()


def _meta(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        out[key] = value
    return out


class _Version(click.ParamType):
    """A prompt version, written `2` or `v2` (as experiments name their variants)."""

    name = "VERSION"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from agents.prompt_registry import RegistryError, variant_version

        if isinstance(value, int):
            return value
        try:
            return variant_version(str(value))
        except RegistryError:
            self.fail(f"{value!r} is not a prompt version (write 2 or v2)", param, ctx)


VERSION = _Version()


@click.group()
def prompt() -> None:
    """Versioned prompt templates (Jinja2, sandboxed; variables: task, capability, tenant, task_id)."""


@prompt.command("add")
@click.argument("name")
@click.option("--file", "file_", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--author", default="", help="Who wrote this version.")
@click.option("--meta", multiple=True, help="KEY=VALUE metadata (repeatable).")
@click.pass_obj
def prompt_add(settings: Settings, name: str, file_: Path, author: str, meta: tuple[str, ...]) -> None:
    """Add the text of FILE as the next version of prompt NAME (named after a capability, e.g. coding).

    The template is rendered once with a sample task first; one that breaks the sandbox's limits (output size,
    rendering time, huge repetitions or powers) or uses an unknown variable is refused, with the reason."""
    from agents.prompt_templates import RenderLimits, TemplateRenderError, check_template

    text = file_.read_text()
    try:  # before the registry is opened: a refused template needs no database to say why
        check_template(text, RenderLimits(settings.prompt_max_chars, settings.prompt_render_timeout_s), name)
    except TemplateRenderError as exc:
        raise click.ClickException(f"{name}: not added: {exc}") from exc
    with _registry(settings) as reg:
        v = reg.add_version(name, text, author=author, metadata=_meta(meta))
    click.echo(f"{v.name} v{v.version} added" + (" (primary)" if v.is_primary else "")
               + f"; variables: {', '.join(v.variables) or '-'}")


@prompt.command("list")
@click.pass_obj
def prompt_list(settings: Settings) -> None:
    """Every prompt version."""
    with _registry(settings) as reg:
        rows = reg.versions()
    table = [("name", "version", "primary", "author", "created", "variables")]
    table += [(v.name, str(v.version), "yes" if v.is_primary else "", v.author[:24],
               f"{v.created_at:%Y-%m-%d %H:%M:%S}", ", ".join(v.variables)) for v in rows]
    for line in _columns(table, right=frozenset({1})):
        click.echo(line)


@prompt.command("show")
@click.argument("name")
@click.argument("version_arg", metavar="[VERSION]", type=VERSION, required=False)
@click.option("--version", "version", type=VERSION, default=None, help="Same as VERSION (2 or v2).")
@click.pass_obj
def prompt_show(settings: Settings, name: str, version_arg: int | None, version: int | None) -> None:
    """Print VERSION (2 or v2; default: the primary one) of prompt NAME with its details."""
    if version_arg is not None and version is not None and version_arg != version:
        raise click.UsageError("give the version once: VERSION or --version")
    version = version_arg if version_arg is not None else version
    with _registry(settings) as reg:
        v = reg.get(name, version)
    click.echo(f"# {v.name} v{v.version}{' (primary)' if v.is_primary else ''} by {v.author or '-'} "
               f"at {v.created_at:%Y-%m-%d %H:%M:%S}; variables: {', '.join(v.variables) or '-'}; "
               f"metadata: {json.dumps(v.metadata)}")
    click.echo(v.template, nl=not v.template.endswith("\n"))


@prompt.command("diff")
@click.argument("name")
@click.argument("v1", type=VERSION)
@click.argument("v2", type=VERSION)
@click.pass_obj
def prompt_diff(settings: Settings, name: str, v1: int, v2: int) -> None:
    """Unified diff between versions V1 and V2 of prompt NAME (each 2 or v2)."""
    with _registry(settings) as reg:
        a, b = reg.get(name, v1), reg.get(name, v2)
    lines = difflib.unified_diff(a.template.splitlines(), b.template.splitlines(),
                                 fromfile=f"{name} v{v1}", tofile=f"{name} v{v2}", lineterm="")
    click.echo("\n".join(lines) or "(no difference)")


@click.group()
def experiment() -> None:
    """A/B(/n) experiments over prompt versions, scored in the stream."""


@experiment.command("start")
@click.argument("name")
@click.option("--prompt", "prompt_name", required=True, help="The prompt whose versions are compared.")
@click.option("--variants", required=True, help="Versions to compare, control first: v1,v2[,v3] (or 1,2).")
@click.option("--weights", default=None, help="Split weights, e.g. 1,1 (split mode; default equal).")
@click.option("--mode", type=click.Choice(["split", "bandit"]), default="split", show_default=True)
@click.option("--metric", type=click.Choice(["success", "quality"]), default="success", show_default=True)
@click.option("--min-samples", type=int, default=100, show_default=True, help="Outcomes per variant before deciding.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Error rate of the sequential test.")
@click.pass_obj
def experiment_start(settings: Settings, name: str, prompt_name: str, variants: str, weights: str | None,
                     mode: str, metric: str, min_samples: int, alpha: float) -> None:
    """Start experiment NAME: new tasks for the prompt get one of the variants."""
    from agents.prompt_registry import Experiment

    if not 0 < alpha < 1:
        raise click.BadParameter("must be between 0 and 1", param_hint="--alpha")
    try:
        w = [float(x) for x in weights.split(",")] if weights else []
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--weights") from exc
    named = [f"v{VERSION.convert(v, None, None)}" for v in variants.split(",")]  # variants are named v1, v2, ...
    with _registry(settings) as reg:
        exp = reg.start_experiment(Experiment(name, prompt_name, named, w, mode, metric, min_samples, alpha))
    click.echo(f"experiment {exp.name} running on prompt {exp.prompt}: {', '.join(exp.variants)} "
               f"({exp.mode}, metric {exp.metric}, alpha {exp.alpha:g}, min {exp.min_samples}/variant)")


@experiment.command("stop")
@click.argument("name")
@click.pass_obj
def experiment_stop(settings: Settings, name: str) -> None:
    """Stop experiment NAME by hand (the primary version stays as it is)."""
    with _registry(settings) as reg:
        exp = reg.stop_experiment(name)
    click.echo(f"experiment {exp.name}: {exp.status}")


@experiment.command("list")
@click.pass_obj
def experiment_list(settings: Settings) -> None:
    """Every experiment, its status and decision."""
    with _registry(settings) as reg:
        rows = [(e, reg.arm_stats(e.name)) for e in reg.experiments()]
    table = [("name", "prompt", "variants", "mode", "status", "n", "decision")]
    for e, arms in rows:
        n = sum(int(a.get("n", 0)) for a in arms.values())
        decision = f"{e.decision} {e.winner or ''}".strip() if e.decision else "-"
        table.append((e.name, e.prompt, ",".join(e.variants), e.mode, e.status, str(n), decision))
    for line in _columns(table, right=frozenset({5})):
        click.echo(line)


def _columns(rows: list[tuple[str, ...]], right: frozenset[int] = frozenset()) -> list[str]:
    """Rows as aligned columns, each as wide as its longest cell (the last column is not padded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    last = len(widths) - 1
    return [" ".join(cell.rjust(w) if i in right else (cell if i == last else cell.ljust(w))
                     for i, (cell, w) in enumerate(zip(row, widths, strict=True))) for row in rows]


@experiment.command("report")
@click.argument("name")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a self-contained HTML page with plots to this file.")
@click.pass_obj
def experiment_report(settings: Settings, name: str, html_path: Path | None) -> None:
    """Per variant: n, successes, rate with interval, mean quality, probability of being best; the decision."""
    from agents.experiment_report import build_report, render_html, render_text

    with _registry(settings) as reg:
        report = build_report(reg.experiment(name), reg.arm_stats(name), reg.history(name))
    click.echo(render_text(report))
    if html_path is not None:
        html_path.write_text(render_html(report))
        click.echo(f"wrote {html_path}")
