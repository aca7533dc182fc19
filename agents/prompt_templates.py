"""Rendering prompt templates safely: a sandbox with no attribute tricks, and no silent blanks.

Templates are Jinja2 text rendered in a `SandboxedEnvironment` (unsafe attributes such as
`__class__` or `mro` raise `SecurityError`; no loader, so no `include`/`import` of files) with
`StrictUndefined`, so a variable the caller did not pass is an error that names it instead of an
empty string in the prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["TemplateRenderError", "render", "template_variables"]

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class TemplateRenderError(ValueError):
    """A template that cannot be parsed or rendered; `missing` names an absent variable, if that is why."""

    def __init__(self, message: str, missing: str | None = None) -> None:
        super().__init__(message)
        self.missing = missing


def template_variables(template: str) -> list[str]:
    """The variables a template uses (sorted), found by parsing it, not by running it."""
    try:
        return sorted(meta.find_undeclared_variables(_ENV.parse(template)))
    except TemplateError as exc:
        raise TemplateRenderError(f"template does not parse: {exc}") from exc


def render(template: str, variables: Mapping[str, Any]) -> str:
    """Render `template` with `variables`; a missing variable raises naming it."""
    missing = [v for v in template_variables(template) if v not in variables]
    if missing:
        raise TemplateRenderError(f"missing template variable {missing[0]!r}"
                                  + (f" (and {', '.join(missing[1:])})" if missing[1:] else ""), missing[0])
    try:
        return _ENV.from_string(template).render(**variables)
    except UndefinedError as exc:  # e.g. an absent key of a passed mapping
        raise TemplateRenderError(f"undefined in template: {exc}") from exc
    except Exception as exc:  # SecurityError (sandbox); TypeError for include/import: there is no loader
        raise TemplateRenderError(f"{type(exc).__name__}: {exc}") from exc
