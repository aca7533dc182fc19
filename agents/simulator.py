"""An offline, deterministic LLM registered with litellm as the provider `simulator`.

It is plainly a simulator: answers are derived from a hash of the model and the messages, so the
same input always gives the same output (replays and tests can compare runs). Latency can be set
to make concurrency measurable; jitter is also derived from the hash, so it is deterministic too.

Tools (issue 15): offered tools and no tool result yet, it asks for tool calls, all in one answer: the
ones the prompt directs (`@tool [STEP:]server__tool {json args}` lines; STEP matches a `Plan step: STEP`
line), else one per offered server (its first tool whose required arguments it can fill: none, or a
`query`/`pattern` text taken from the prompt). Given tool results, it answers, citing each one as
`- used <tool>: <sha256[:12] of the result>`, and repeats such lines it finds in the prompt (an
aggregator's answer so cites every result its branches used).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
from typing import Any

import litellm
from litellm import CustomLLM, ModelResponse

from agents.judging import JUDGE_MARKER
from agents.models import SIMULATOR_MODELS

__all__ = ["PROVIDER", "SimulatorLLM", "install_simulator"]

PROVIDER = "simulator"
# A judge request lists "### Candidate <k>" blocks; the simulator scores each, as a judge model would.
_CANDIDATE = re.compile(r"^### Candidate (\d+)$", re.MULTILINE)
_ANSWERED_BY = re.compile(r"^\[([^\]\s]+)\]")  # every answer opens with `[model]`
_QUALITY = {m.name.split("/", 1)[-1]: m.quality for m in SIMULATOR_MODELS}  # answers name the model without provider
_DIRECTIVE = re.compile(r"^@tool (?:(?P<step>[\w-]+):)?(?P<name>[\w-]+) (?P<args>\{.*\})\s*$", re.MULTILINE)
_PLAN_STEP = re.compile(r"^Plan step: ([\w-]+)$", re.MULTILINE)
_USED = re.compile(r"^- used [\w-]+: [0-9a-f]{12}$", re.MULTILINE)

_OPENERS = (
    "Here is a plan",
    "Proposed change",
    "Answer",
    "Summary of the approach",
    "Result",
)
_STEPS = (
    "read the relevant module and its tests",
    "write a failing test that captures the request",
    "make the smallest change that passes it",
    "check edge cases: empty input, large input, bad input",
    "update the documentation and the changelog",
    "measure before and after on the benchmark",
    "review the diff for repeated code",
)


def _text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


def _digest12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _fillable(schema: dict[str, Any], topic: str) -> dict[str, Any] | None:
    """Arguments for a tool's required parameters, if the simulator can make them up; else None."""
    args: dict[str, Any] = {}
    for name in schema.get("required", []):
        if name not in ("query", "pattern"):
            return None
        args[name] = topic if name == "query" else re.escape(topic.split()[0] if topic.split() else "x")
    return args


def _tool_requests(tools: list[dict[str, Any]], messages: list[dict[str, Any]], prompt: str) -> list[dict[str, Any]]:
    """The calls to ask for: the prompt's directives for the offered tools, else one per offered server."""
    offered = {t["function"]["name"]: t["function"] for t in tools if t.get("type") == "function"}
    step = _PLAN_STEP.findall(prompt)
    calls = [(m["name"], json.loads(m["args"])) for m in _DIRECTIVE.finditer(prompt)
             if m["name"] in offered and (m["step"] is None or m["step"] in step)]
    if not calls:
        last = str(messages[-1].get("content") or "") if messages else ""
        topic = " ".join(last.split()[:6])
        servers: set[str] = set()
        for name, function in offered.items():
            server = name.split("__")[0]
            args = _fillable(function.get("parameters") or {}, topic)
            if server not in servers and args is not None:
                servers.add(server)
                calls.append((name, args))
    return [{"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, (n, a) in enumerate(calls, 1)]


def _tokens(text: str) -> int:
    """A rough, stable token count (about 4 characters a token), never zero."""
    return max(1, len(text) // 4)


def _grade(prompt: str, k: str, rng: random.Random) -> float:
    """A judge's score for candidate `k`: an answer of a simulator model scores about ten times that model's
    quality (so a cheaper model's answers grade lower, as they would), give or take 1.5; anything else 3-10."""
    block = prompt.split(f"### Candidate {k}\n", 1)[-1]
    answered_by = _ANSWERED_BY.match(block)
    quality = _QUALITY.get(answered_by.group(1).split("/", 1)[-1]) if answered_by else None
    if quality is None:
        return rng.randint(30, 100) / 10
    return round(min(10.0, max(0.0, 10 * quality + rng.uniform(-1.5, 1.5))), 1)


class SimulatorLLM(CustomLLM):
    """litellm custom provider that answers offline, deterministically."""

    def __init__(self, latency_ms: float = 0.0, jitter_ms: float = 0.0) -> None:
        super().__init__()
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms

    def _answer(self, model: str, messages: list[dict[str, Any]],
                tools: list[dict[str, Any]] | None = None) -> tuple[ModelResponse, float]:
        prompt = _text(messages)
        digest = hashlib.sha256(f"{model}\n{prompt}".encode()).digest()
        rng = random.Random(digest)  # deterministic per input, not for security
        results = [m for m in messages if m.get("role") == "tool"]
        if tools and not results:
            requests = _tool_requests(tools, messages, prompt)
            if requests:
                return self._respond(model, prompt, None, rng, requests)
        if results:
            last = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
        else:
            last = str(messages[-1].get("content") or "") if messages else ""
        topic = " ".join(last.split()[:12])
        steps = rng.sample(_STEPS, k=3)
        judged = _CANDIDATE.findall(prompt) if JUDGE_MARKER in prompt else []
        content = "\n".join(f"candidate {k}: {_grade(prompt, k, rng):g}" for k in judged) or (
            f"[{model}] {rng.choice(_OPENERS)} for: {topic}\n"
            + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
            + f"\nconfidence: {rng.randint(50, 99)}%"
        )
        used = [f"- used {_called(messages, m)}: {_digest12(str(m.get('content') or ''))}" for m in results]
        cited = list(dict.fromkeys([*_USED.findall(prompt), *used]))
        if cited:
            content += "\n" + "\n".join(cited)
        return self._respond(model, prompt, content, rng)

    def _respond(self, model: str, prompt: str, content: str | None, rng: random.Random,
                 tool_calls: list[dict[str, Any]] | None = None) -> tuple[ModelResponse, float]:
        tokens_in, tokens_out = _tokens(prompt), _tokens(content or json.dumps(tool_calls))
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        response = ModelResponse(
            model=model,
            choices=[{"index": 0, "finish_reason": "tool_calls" if tool_calls else "stop", "message": message}],
            usage={"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out},
        )
        delay_ms = self.latency_ms + (rng.uniform(-1.0, 1.0) * self.jitter_ms if self.jitter_ms else 0.0)
        return response, max(0.0, delay_ms) / 1000.0

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        tools = _offered(kwargs)
        response, delay = self._answer(model, messages, tools) if tools else self._answer(model, messages)
        if delay:
            time.sleep(delay)
        return response

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        tools = _offered(kwargs)
        response, delay = self._answer(model, messages, tools) if tools else self._answer(model, messages)
        if delay:
            await asyncio.sleep(delay)
        return response


def _offered(kwargs: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The tools litellm passes a custom provider (in its optional params)."""
    return (kwargs.get("optional_params") or {}).get("tools")


def _called(messages: list[dict[str, Any]], result: dict[str, Any]) -> str:
    """The function name a tool result answers (from the assistant message that asked for it)."""
    for m in messages:
        for call in m.get("tool_calls") or ():
            if call.get("id") == result.get("tool_call_id"):
                return str(call["function"]["name"])
    return "tool"


def install_simulator(latency_ms: float = 0.0, jitter_ms: float = 0.0) -> SimulatorLLM:
    """Register the simulator with litellm (replacing an earlier registration) and return it."""
    handler = SimulatorLLM(latency_ms=latency_ms, jitter_ms=jitter_ms)
    others = [p for p in litellm.custom_provider_map if p.get("provider") != PROVIDER]
    # litellm reads this map on every call, so replacing the handler takes effect at once.
    litellm.custom_provider_map = [*others, {"provider": PROVIDER, "custom_handler": handler}]
    return handler
