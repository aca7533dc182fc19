"""MCP server `code_intelligence`: Python source analysed with `ast`, as data: symbols, imports, cyclomatic
complexity per function, and lint findings (unused imports, bare excepts, mutable defaults, too complex).

A tool takes a workspace path (refused outside it) or the source text itself.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from mcp.server.fastmcp import FastMCP

from streams.settings import Settings
from streams.tools.servers import serve
from streams.tools.servers.workspace import Workspace, workspace_of

__all__ = ["analyze_source", "build", "main"]

_BRANCHES = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.IfExp, ast.ExceptHandler, ast.With, ast.AsyncWith,
             ast.Assert, ast.comprehension, ast.match_case)
_TOO_COMPLEX = 10


def _complexity(node: ast.AST) -> int:
    """McCabe-style: 1 + branches + boolean operands beyond the first."""
    total = 1
    for child in ast.walk(node):
        if isinstance(child, _BRANCHES):
            total += 1
        elif isinstance(child, ast.BoolOp):
            total += len(child.values) - 1
    return total


def analyze_source(source: str, name: str = "<source>") -> dict[str, Any]:
    """Symbols, imports, complexity and lint findings of one module's source."""
    try:
        tree = ast.parse(source, filename=name)
    except SyntaxError as exc:
        return {"module": name, "symbols": [], "imports": [], "complexity": {},
                "findings": [{"line": exc.lineno or 0, "code": "syntax", "message": str(exc.msg)}]}
    symbols: list[dict[str, Any]] = []
    imports: list[str] = []
    imported: dict[str, int] = {}
    complexity: dict[str, int] = {}
    findings: list[dict[str, Any]] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            symbols.append({"kind": "class", "name": node.name, "line": node.lineno})
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    symbols.append({"kind": "method", "name": f"{node.name}.{item.name}", "line": item.lineno})
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            symbols.append({"kind": "function", "name": node.name, "line": node.lineno})
        elif isinstance(node, ast.Assign):
            symbols += [{"kind": "variable", "name": t.id, "line": node.lineno}
                        for t in node.targets if isinstance(t, ast.Name)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                imports.append(alias.name)
                imported[(alias.asname or alias.name).split(".")[0]] = node.lineno
        elif isinstance(node, ast.ImportFrom):
            imports.append("." * node.level + (node.module or ""))
            for alias in node.names:
                imported[alias.asname or alias.name] = node.lineno
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            score = complexity[node.name] = _complexity(node)
            if score > _TOO_COMPLEX:
                findings.append({"line": node.lineno, "code": "complexity",
                                 "message": f"{node.name} has complexity {score} (> {_TOO_COMPLEX})"})
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if isinstance(default, ast.List | ast.Dict | ast.Set):
                    findings.append({"line": default.lineno, "code": "mutable-default",
                                     "message": f"{node.name} has a mutable default argument"})
        elif isinstance(node, ast.ExceptHandler) and node.type is None:
            findings.append({"line": node.lineno, "code": "bare-except", "message": "bare `except:`"})
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    exported = _exported(tree)
    for alias, line in sorted(imported.items(), key=lambda kv: kv[1]):
        if alias not in used and alias not in exported and alias != "*" and alias != "annotations":
            findings.append({"line": line, "code": "unused-import", "message": f"{alias!r} imported but unused"})
    return {"module": name, "symbols": symbols, "imports": sorted(set(imports)), "complexity": complexity,
            "findings": sorted(findings, key=lambda f: (f["line"], f["code"]))}


def _exported(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            if isinstance(node.value, ast.List | ast.Tuple):
                return {e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return set()


def build(workspace: Workspace) -> FastMCP:
    server = FastMCP("code_intelligence", log_level="WARNING")

    def load(path: str | None, source: str | None) -> tuple[str, str]:
        if source is not None:
            return source, path or "<source>"
        if not path:
            raise ValueError("give a workspace `path` or the `source` text")
        target = workspace.path(path)
        return target.read_text(encoding="utf-8", errors="replace"), workspace.show(target)

    @server.tool()
    def python_files(path: str = ".") -> list[str]:
        """The Python files under a workspace folder."""
        return sorted(workspace.show(p) for p in workspace.path(path).rglob("*.py"))

    @server.tool()
    def analyze(path: str | None = None, source: str | None = None) -> str:
        """Everything about one Python module: symbols, imports, complexity, lint findings (JSON)."""
        return json.dumps(analyze_source(*load(path, source)))

    @server.tool()
    def symbols(path: str | None = None, source: str | None = None) -> str:
        """The module's classes, methods, functions and top-level variables with their lines (JSON)."""
        return json.dumps(analyze_source(*load(path, source))["symbols"])

    @server.tool()
    def lint(path: str | None = None, source: str | None = None) -> str:
        """Lint findings as data: [{line, code, message}] (JSON)."""
        return json.dumps(analyze_source(*load(path, source))["findings"])

    return server


def main() -> None:
    serve(build(workspace_of(Settings())))


if __name__ == "__main__":
    main()
