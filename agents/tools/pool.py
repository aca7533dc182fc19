"""The MCP client pool: one session per configured server, started together, restarted when they fail.

Each server's transport and session live in a task of their own (the SDK's transports are anyio context
managers, entered and left in one task); calls are made from any task on its session. A call past its
timeout is answered as a tool error (the model reads it like any other) and the server is restarted in the
background, since a server that does not answer one call may answer none. A server whose connection is gone
(its process crashed) is restarted and the call tried once more. A server that cannot start at all is an
error at start naming the server and its command or URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.types import CONNECTION_CLOSED, CallToolResult, ErrorData, TextContent, Tool

from agents.tools.config import ServerSpec, ToolConfig

__all__ = ["ServerStartError", "ToolOutcome", "ToolPool", "function_name", "split_function_name"]

_SEP = "__"
_TIMED_OUT = 408  # the SDK's code for a request that got no answer in time


class ServerStartError(RuntimeError):
    """A configured server could not be started or reached."""

    def __init__(self, spec: ServerSpec, error: str) -> None:
        super().__init__(f"MCP server {spec.name!r} did not start ({spec.transport}: {spec.describe()}): {error}")
        self.server = spec.name


def function_name(server: str, tool: str) -> str:
    """The name a model sees for a server's tool (function names allow letters, digits, '_' and '-')."""
    return f"{server}{_SEP}{tool}"


def split_function_name(name: str) -> tuple[str, str]:
    server, _, tool = name.partition(_SEP)
    return server, tool


@dataclass
class ToolOutcome:
    """What a call gave: its text (the result, or the error the model is told), and how it ended."""

    text: str
    status: str  # ok | error (the tool said so) | timeout | unavailable
    latency_ms: float = 0.0
    restarted: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _text_of(result: CallToolResult) -> str:
    parts = [c.text if isinstance(c, TextContent) else c.model_dump_json() for c in result.content]
    return "\n".join(parts)


@dataclass
class _Server:
    spec: ServerSpec
    env: Mapping[str, str] | None
    cwd: Path | None
    errlog: TextIO | None
    session: ClientSession | None = None
    tools: list[Tool] = field(default_factory=list)
    starts: int = 0
    _runner: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _restarting: asyncio.Lock = field(default_factory=asyncio.Lock)

    def _transport(self) -> Any:
        if self.spec.url:
            return streamable_http_client(self.spec.url)
        argv = self.spec.argv()
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(self.env) if self.env else None,
                                       cwd=self.cwd)
        return stdio_client(params, **({"errlog": self.errlog} if self.errlog is not None else {}))

    async def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                streams = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
                await session.initialize()
                self.tools = list((await session.list_tools()).tools)
                self.session = session
                ready.set_result(None)
                await self._stop.wait()
        except Exception as exc:  # a start failure goes to whoever waits for the start
            if not ready.done():
                ready.set_exception(exc)
        except BaseException as exc:  # anyio groups wrap failures; a cancelled start says so too
            if not ready.done():
                ready.set_exception(RuntimeError(repr(exc)))
            raise
        finally:
            self.session = None

    async def start(self, timeout_s: float) -> None:
        self._stop = asyncio.Event()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run(ready), name=f"mcp-{self.spec.name}")
        self.starts += 1
        try:
            await asyncio.wait_for(asyncio.shield(ready), timeout_s)
        except Exception as exc:
            await self.stop()
            error = f"no answer within {timeout_s:g} s" if isinstance(exc, TimeoutError) else _describe(exc)
            raise ServerStartError(self.spec, error) from exc

    async def stop(self) -> None:
        self._stop.set()
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(runner), 6.0)  # stdio: stdin closed, then SIGTERM, SIGKILL
        except Exception:  # a server that does not stop in time (or whose transport broke) is cancelled
            runner.cancel()
            with contextlib.suppress(BaseException):
                await runner

    async def restart(self, timeout_s: float, seen: ClientSession | None) -> None:
        """Start the server again, unless someone already did since `seen` failed."""
        async with self._restarting:
            if self.session is not None and self.session is not seen and self._runner is not None:
                return
            await self.stop()
            await self.start(timeout_s)


def _describe(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None)
    if inner:
        return "; ".join(_describe(e) for e in inner)
    return f"{type(exc).__name__}: {exc}"


class ToolPool:
    """The configured servers' sessions; `call` never raises for a server's failure, it returns it."""

    def __init__(self, config: ToolConfig, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 start_timeout_s: float = 30.0, errlog: TextIO | None = None) -> None:
        self.config = config
        self.start_timeout_s = start_timeout_s
        self._servers = {s.name: _Server(s, env, cwd, errlog) for s in config.servers}
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def names(self) -> list[str]:
        return list(self._servers)

    async def start(self, names: list[str] | None = None) -> None:
        """Start the servers (all, or `names`) at once; the first that fails stops the others and is raised."""
        chosen = [self._servers[n] for n in (names or self._servers)]
        results = await asyncio.gather(*(s.start(self.start_timeout_s) for s in chosen), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.close()
            raise failed[0]

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*(s.stop() for s in self._servers.values()), return_exceptions=True)

    async def __aenter__(self) -> ToolPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def tools(self, server: str) -> list[Tool]:
        return list(self._servers[server].tools)

    def starts(self, server: str) -> int:
        return self._servers[server].starts

    def function_schemas(self, servers: list[str]) -> list[dict[str, Any]]:
        """The tools of `servers` as litellm/OpenAI function schemas, named `server__tool`."""
        return [{"type": "function", "function": {
                    "name": function_name(name, tool.name), "description": (tool.description or "")[:1000],
                    "parameters": tool.inputSchema or {"type": "object", "properties": {}}}}
                for name in servers for tool in self._servers[name].tools]

    async def health(self) -> dict[str, str]:
        """Per server: "ok", or why not (a ping that fails or does not come back within 5 s)."""
        async def one(server: _Server) -> str:
            if server.session is None:
                return "down"
            try:
                await server.session.send_ping()
                return "ok"
            except Exception as exc:
                return f"unhealthy: {_describe(exc)[:120]}"
        names = list(self._servers)
        states = await asyncio.gather(*(asyncio.wait_for(one(self._servers[n]), 5.0) for n in names),
                                      return_exceptions=True)
        return {n: s if isinstance(s, str) else "unhealthy: no answer" for n, s in zip(names, states, strict=True)}

    async def call(self, server: str, tool: str, args: dict[str, Any], timeout_s: float | None = None) -> ToolOutcome:
        """Call a tool; a timeout, a tool error or a lost server is an outcome (with the text a model is shown)."""
        if server not in self._servers:
            return ToolOutcome(f"unknown MCP server {server!r}", "error")
        entry = self._servers[server]
        timeout_s = min(timeout_s or entry.spec.timeout_s, entry.spec.timeout_s)
        started = time.perf_counter()
        restarted = False
        for attempt in (1, 2):
            session = entry.session
            try:
                if session is None:
                    raise McpError(ErrorData(code=CONNECTION_CLOSED, message="not connected"))
                result = await session.call_tool(tool, args, read_timeout_seconds=timedelta(seconds=timeout_s))
            except McpError as exc:
                error = getattr(exc, "error", None)
                code = getattr(error, "code", CONNECTION_CLOSED)
                if code == _TIMED_OUT:
                    self._restart_later(entry, session)
                    return ToolOutcome(f"tool {server}.{tool} timed out after {timeout_s:g} s (cancelled)", "timeout",
                                       _ms(started), True)
                if code != CONNECTION_CLOSED or attempt == 2:
                    return ToolOutcome(f"tool {server}.{tool} failed: {getattr(error, 'message', exc)}", "error",
                                       _ms(started), restarted)
            except (OSError, RuntimeError, EOFError) as exc:  # the transport broke under the call
                if attempt == 2:
                    return ToolOutcome(f"tool {server}.{tool} failed: {_describe(exc)[:300]}", "unavailable",
                                       _ms(started), restarted)
            else:
                text = _text_of(result)
                return ToolOutcome(text, "error" if result.isError else "ok", _ms(started), restarted)
            try:  # the server is gone (crashed): start it again and try once more
                await entry.restart(self.start_timeout_s, session)
                restarted = True
            except ServerStartError as exc:
                return ToolOutcome(str(exc), "unavailable", _ms(started), restarted)
        raise AssertionError("unreachable")

    def _restart_later(self, entry: _Server, seen: ClientSession | None) -> None:
        if entry.session is seen:
            entry.session = None  # calls from now on wait for the new server rather than queue on the hung one

        async def restart() -> None:
            with contextlib.suppress(ServerStartError):
                await entry.restart(self.start_timeout_s, seen)
        task = asyncio.create_task(restart())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
