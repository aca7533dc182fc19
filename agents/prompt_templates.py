"""Rendering prompt templates safely: a sandbox with no attribute tricks, no silent blanks, and bounds.

Templates are Jinja2 text rendered in a `SandboxedEnvironment` (unsafe attributes such as
`__class__` or `mro` raise `SecurityError`; no loader, so no `include`/`import` of files) with
`StrictUndefined`, so a variable the caller did not pass is an error that names it instead of an
empty string in the prompt.

A template may not make the worker render for long or hold much: `RenderLimits` bounds the output
(`max_chars`) and the time (`timeout_s`). Anything that would make a value larger than the output
may be is refused before it is computed: repetition (`'A' * 200000000`), powers (`9**99999999`),
`~` and `+` chains, `replace`/`join`, padding and `%`/`format` widths. Time is checked on every line the
compiled template runs (a trace function on the rendering thread only), so nested loops end at the
deadline. Filters are a safe subset (no `center`, `indent`, `wordwrap`, `batch`, `slice`, `format`).
`check_template` renders a template once with sample variables: `prompt add` refuses what fails it.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, UndefinedError, meta
from jinja2.compiler import CodeGenerator, Frame
from jinja2.defaults import DEFAULT_FILTERS
from jinja2.nodes import Concat
from jinja2.sandbox import SandboxedEnvironment, SecurityError

__all__ = ["DEFAULT_LIMITS", "RenderLimits", "TemplateLimitError", "TemplateRenderError", "check_template", "render",
           "sample_variables", "template_variables"]

_MAX_INT_DIGITS = 4300  # Python's own limit for printing an int; a prompt needs far fewer
_MAX_RANGE = 10_000
_FILTERS = ("abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
            "groupby", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
            "rejectattr", "replace", "reverse", "round", "select", "selectattr", "sort", "string", "striptags",
            "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "wordcount")


@dataclass(frozen=True)
class RenderLimits:
    """How large a rendered prompt (and any value made on the way) may be, and how long rendering may take."""

    max_chars: int = 1_048_576
    timeout_s: float = 1.0


DEFAULT_LIMITS = RenderLimits()


class TemplateRenderError(ValueError):
    """A template that cannot be parsed or rendered; `missing` names an absent variable, if that is why."""

    def __init__(self, message: str, missing: str | None = None) -> None:
        super().__init__(message)
        self.missing = missing


class TemplateLimitError(TemplateRenderError):
    """A template refused for what rendering it would cost; `limit` is "size" or "time", the message says more."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class _Refused(SecurityError):
    """Raised inside rendering when a size limit would be broken."""

    limit = "size"


class _TooSlow(_Refused):
    limit = "time"


def sample_variables(capability: str = "coding") -> dict[str, str]:
    """The variables a prompt is rendered with (as the prompt chooser passes them), with sample values."""
    task = ("Add a retry with exponential backoff to the HTTP client in `client.py`, keep the public API, "
            "and add tests for the timeout and the give-up paths. ") * 16  # a long-ish description, ~2,000 chars
    return {"task": task.strip(), "capability": capability, "tenant": "default", "task_id": "sample-task"}


class _Generator(CodeGenerator):
    """Compiles `a ~ b ~ ...` so the sandbox checks the joined text's size."""

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.bounded(")
        super().visit_Concat(node, frame)
        self.write(")")


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _Generator

    def __init__(self, limits: RenderLimits) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, optimized=False)
        self.limits = limits
        self.filters = {name: self._bounded_filter(name, DEFAULT_FILTERS[name]) for name in _FILTERS}
        self.globals = {"range": self._range, "dict": dict, "namespace": self.globals["namespace"]}
        self.concat = self._concat  # the text of `{% set x %}...{% endset %}`, macros and call blocks
        self.finalize = self.bounded  # every `{{ value }}`, before it is turned into text

    def _concat(self, parts: Iterable[str]) -> str:
        parts = list(parts)
        size = sum(len(p) for p in parts)
        if size > self.limits.max_chars:
            self._refuse(f"a block of {size} characters")
        return "".join(parts)

    # -- sizes ---------------------------------------------------------------------------------

    def _refuse(self, what: str) -> None:
        raise _Refused(f"{what}: more than the {self.limits.max_chars} characters a prompt may have")

    def bounded(self, value: Any) -> Any:
        """`value`, unless it is text or a collection larger than a prompt may be, or a huge number."""
        if isinstance(value, str | bytes | list | tuple | dict) and _size(value) > self.limits.max_chars:
            self._refuse(f"a value of {_size(value)} characters")
        if isinstance(value, int) and value.bit_length() > _MAX_INT_DIGITS * 3.33:
            raise _Refused(f"a number of more than {_MAX_INT_DIGITS} digits")
        return value

    def _check_ints(self, args: Iterable[Any]) -> None:
        for arg in args:
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > self.limits.max_chars:
                self._refuse(f"an argument of {arg}")

    def _range(self, *args: int) -> range:
        numbers = range(*args)
        if len(numbers) > _MAX_RANGE:
            raise _Refused(f"a range of {len(numbers)} numbers: at most {_MAX_RANGE}")
        return numbers

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            if right * math.log10(abs(left)) > _MAX_INT_DIGITS:
                raise _Refused(f"{left} ** {right} has more than {_MAX_INT_DIGITS} digits")
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and _is_int(n) and _size(seq) * n > self.limits.max_chars:
                    self._refuse(f"repeating {_size(seq)} characters {n} times")
            if _is_int(left) and _is_int(right) and (left.bit_length() + right.bit_length()) > _MAX_INT_DIGITS * 3.33:
                raise _Refused(f"a product of more than {_MAX_INT_DIGITS} digits")
        elif operator == "%" and isinstance(left, str):
            self._check_ints(right if isinstance(right, tuple) else (right,))
            self._check_widths(left, r"%[#0\- +]*(\d+)|%[#0\- +]*\d*\.(\d+)")
        return self.bounded(super().call_binop(context, operator, left, right))

    def _check_widths(self, text: str, pattern: str) -> None:
        for match in re.finditer(pattern, text):
            for width in filter(None, match.groups()):
                if len(width) > 9 or int(width) > self.limits.max_chars:
                    self._refuse(f"a width of {width}")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`'{:>999999999}'.format(x)` and the like: widths and arguments checked before formatting."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            self._check_ints((*args, *kwargs.values()))
            self._check_widths(text, r"\{[^{}]*:[^{}]*?(\d+)")
            return self.bounded(wrapped(*args, **kwargs))

        return bounded_format

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        self._check_ints((*args, *kwargs.values()))
        owner, name = getattr(__obj, "__self__", None), getattr(__obj, "__name__", "")
        if isinstance(owner, str) and name == "replace" and len(args) >= 2:
            self._check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else -1)
        elif isinstance(owner, str) and name == "join" and args:
            items = list(args[0])
            self._check_join(owner, items)
            args = (items, *args[1:])
        return self.bounded(super().call(__context, __obj, *args, **kwargs))

    def _check_replace(self, text: Any, old: Any, new: Any, count: Any = -1) -> None:
        if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
            return
        hits = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        if len(text) + hits * (len(new) - len(old)) > self.limits.max_chars:
            self._refuse(f"replacing {hits} times with {len(new)} characters")

    def _check_join(self, sep: Any, items: list[Any]) -> None:
        size = sum(len(x) if isinstance(x, str) else 32 for x in items) + len(str(sep)) * max(len(items) - 1, 0)
        if size > self.limits.max_chars:
            self._refuse(f"joining {len(items)} items")

    def _bounded_filter(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """A filter that refuses huge arguments (and, for join and replace, huge results before making them)."""

        @wraps(func)  # keeps jinja_pass_arg, so Jinja still passes the context or eval context first
        def bounded_filter(*args: Any, **kwargs: Any) -> Any:
            values = [a for a in args if not _is_jinja_context(a)]
            self._check_ints((*values[1:], *kwargs.values()))
            if name == "replace" and len(values) >= 3:
                self._check_replace(*values[:4])
            elif name == "join" and values:
                items = list(values[0])
                self._check_join(values[1] if len(values) > 1 else kwargs.get("d", ""), items)
                args = tuple(items if a is values[0] else a for a in args)
            return self.bounded(func(*args, **kwargs))

        return bounded_filter


def _size(value: Any, depth: int = 0) -> int:
    """About how many characters `value` prints as (a collection: its items' sizes added up)."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, list | tuple | set | dict) and depth < 8:
        items = value.items() if isinstance(value, dict) else value
        return len(value) * 2 + sum(_size(x, depth + 1) for x in items)
    return 8


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_jinja_context(value: Any) -> bool:
    return type(value).__name__ in ("Context", "EvalContext", "Environment", "_Sandbox")


@lru_cache(maxsize=8)
def _sandbox(limits: RenderLimits) -> _Sandbox:
    return _Sandbox(limits)


@lru_cache(maxsize=256)  # the registry's templates are few and rendered for every task: compile each once
def _compiled(limits: RenderLimits, template: str) -> Template:
    return _sandbox(limits).from_string(template)


def template_variables(template: str) -> list[str]:
    """The variables a template uses (sorted), found by parsing it, not by running it."""
    return list(_variables(template))


@lru_cache(maxsize=256)
def _variables(template: str) -> tuple[str, ...]:
    try:
        return tuple(sorted(meta.find_undeclared_variables(_sandbox(DEFAULT_LIMITS).parse(template))))
    except TemplateError as exc:
        raise TemplateRenderError(f"template does not parse: {exc}") from exc


class _Deadline:
    """Raises in the template's own code once `timeout_s` have passed (trace events of this thread only)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s

    def __call__(self, frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != "<template>":
            return None  # not compiled template code: not traced line by line
        self._check()
        return self._line

    def _line(self, frame: Any, event: str, arg: Any) -> Any:
        self._check()
        return self._line

    def _check(self) -> None:
        if time.monotonic() > self.deadline:
            raise _TooSlow(f"rendering took longer than {self.timeout_s:g} s")


def render(template: str, variables: Mapping[str, Any], limits: RenderLimits = DEFAULT_LIMITS) -> str:
    """Render `template` with `variables` within `limits`; a missing variable raises naming it, a broken
    limit raises TemplateLimitError saying which."""
    missing = [v for v in template_variables(template) if v not in variables]
    if missing:
        raise TemplateRenderError(f"missing template variable {missing[0]!r}"
                                  + (f" (and {', '.join(missing[1:])})" if missing[1:] else ""), missing[0])
    previous = sys.gettrace()
    try:
        compiled = _compiled(limits, template)
        sys.settrace(_Deadline(limits.timeout_s))
        size, parts = 0, []
        for part in compiled.generate(**variables):
            size += len(part)
            if size > limits.max_chars:
                raise _Refused(f"the output is longer than the {limits.max_chars} characters a prompt may have")
            parts.append(part)
        return "".join(parts)
    except _Refused as exc:
        raise TemplateLimitError(f"template refused: {exc}", exc.limit) from None
    except UndefinedError as exc:  # e.g. an absent key of a passed mapping
        raise TemplateRenderError(f"undefined in template: {exc}") from exc
    except Exception as exc:  # SecurityError (sandbox); TypeError for include/import: there is no loader
        raise TemplateRenderError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        sys.settrace(previous)


def check_template(template: str, limits: RenderLimits = DEFAULT_LIMITS, capability: str = "coding") -> None:
    """Render `template` once with sample variables (as a task would); raise why it cannot be used."""
    render(template, sample_variables(capability), limits)
