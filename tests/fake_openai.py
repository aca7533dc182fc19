"""A local OpenAI-compatible HTTP server for tests: each model name can be told how to misbehave.

Behaviours per model: "ok", "slow:<seconds>", "429", "500", "hang" (never answers), or a list of
them taken one per request (then the last one repeats), e.g. ["429", "429", "ok"]. Every request
is recorded with its model and arrival time, so a test can see retries and their backoff.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeOpenAI"]


@dataclass
class FakeOpenAI:
    """Runs in its own thread and event loop, so sync and async tests can both use it."""

    behaviours: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    hits: list[tuple[str, float]] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _closing: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def times(self, model: str) -> list[float]:
        return [t for m, t in self.hits if m == model]

    def _behaviour(self, model: str) -> str:
        spec = self.behaviours.get(model, "ok")
        if isinstance(spec, list):
            n = len(self.times(model)) - 1
            return spec[min(n, len(spec) - 1)]
        return spec

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = body.get("model", "")
        self.hits.append((model, time.monotonic()))
        behaviour = self._behaviour(model)
        if behaviour == "429":
            return web.json_response({"error": {"message": "rate limited", "type": "rate_limit_error"}},
                                     status=429, headers={"retry-after-ms": "1"})
        if behaviour == "500":
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
        if behaviour == "hang":
            while not self._closing:
                await asyncio.sleep(0.05)
            return web.json_response({"error": {"message": "closing"}}, status=503)
        if behaviour.startswith("slow:"):
            await asyncio.sleep(float(behaviour.split(":", 1)[1]))
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        text = f"answer from {model}: {prompt[:40]}"
        return web.json_response({
            "id": f"chatcmpl-{len(self.hits)}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
        })

    def start(self) -> FakeOpenAI:
        sock = socket.socket()
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_post("/chat/completions", self._chat)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.SockSite(self._runner, sock).start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        self._closing = True
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
