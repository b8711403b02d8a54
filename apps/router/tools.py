"""The tool relay: run the tool calls a model answers with against our MCP servers.

Given a chat request, its routing decision, the MCP servers a caller allows (name → URL of the
server's streamable-HTTP endpoint) and the caller's API key, :func:`relay` asks the tier's chain,
and while the answer holds ``tool_calls`` it runs each through the official ``mcp`` client,
appends the results as ``tool`` messages and asks again: at most
``BODYBROKER_TOOL_RELAY["max_rounds"]`` rounds, within the request's deadline. If the model still
asks for tools after the last round, one more call without tools asks for a plain answer.

The tier rule: Gold is offered no tool; Silver only the tools its servers mark read-only; Bronze
every tool (its writing tools only *ask* for changes: change requests). Every call carries the
caller's key, so it runs with the caller's scopes, and ``X-Bodybroker-Tier``, so the MCP server
enforces the same rule and audits the calls that ask for a change. A tool the tier may not call,
an unknown tool, a tool's own error or a timeout becomes a ``tool`` message with the error, which
the model sees; the relay itself never fails a request.

Tools are offered to the model as ``<server>__<tool>`` so two servers' tools never clash.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
from django.conf import settings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from apps.router import chains, metrics
from apps.router.contracts import Answer, InferenceRequest
from apps.router.policy import RouteDecision

logger = logging.getLogger(__name__)

SEPARATOR = "__"
# The tool kinds (by their MCP annotation) each tier is offered; mirrors bodybroker.mcp's rule,
# which the MCP servers enforce again on every call.
OFFERED: dict[str, frozenset[str]] = {
    "gold": frozenset(),
    "silver": frozenset({"read"}),
    "bronze": frozenset({"read", "request"}),
}
MAX_RESULT_CHARS = 8000  # a tool result longer than this is cut, so one call cannot fill the prompt


@dataclass(frozen=True)
class ToolServers:
    """The MCP servers a request may use and the credential every call runs with."""

    urls: Mapping[str, str]  # server name → its streamable-HTTP MCP URL
    credential: str  # the caller's API key: every call runs with the caller's scopes


@dataclass(frozen=True)
class _Tool:
    server: str
    name: str
    kind: str  # "read" or "request"
    spec: dict[str, Any]  # the OpenAI function tool offered to the model


def _config() -> dict[str, Any]:
    return dict(settings.BODYBROKER_TOOL_RELAY)


def _client(url: str, servers: ToolServers, tier: str, timeout_s: float) -> tuple[Client, Any]:
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {servers.credential}", "X-Bodybroker-Tier": tier},
        timeout=httpx2.Timeout(timeout_s),
    )
    return Client(streamable_http_client(url, http_client=http)), http


async def _list_server(name: str, url: str, servers: ToolServers, tier: str) -> list[_Tool]:
    timeout_s = float(_config()["tool_timeout_s"])
    client, http = _client(url, servers, tier, timeout_s)
    try:
        async with asyncio.timeout(timeout_s), http, client:
            listed = (await client.list_tools()).tools
    except Exception as exc:  # an unreachable server offers no tools; the rest still do
        logger.warning("tool relay: listing %s (%s) failed: %r", name, url, exc)
        return []
    tools = []
    for tool in listed:
        hints = tool.annotations
        kind = "read" if hints is not None and hints.read_only_hint else "request"
        spec = {
            "type": "function",
            "function": {
                "name": f"{name}{SEPARATOR}{tool.name}",
                "description": tool.description or "",
                "parameters": tool.input_schema or {"type": "object", "properties": {}},
            },
        }
        tools.append(_Tool(server=name, name=tool.name, kind=kind, spec=spec))
    return tools


async def list_tools(servers: ToolServers, tier: str) -> dict[str, _Tool]:
    """Every tool of ``servers`` by its offered name (the tier filter is applied when offering)."""
    listed = await asyncio.gather(
        *(_list_server(name, url, servers, tier) for name, url in servers.urls.items())
    )
    return {tool.spec["function"]["name"]: tool for tools in listed for tool in tools}


def _text(result: Any) -> str:
    parts = [getattr(part, "text", None) for part in result.content]
    text = "\n".join(p for p in parts if isinstance(p, str))
    if not text and result.structured_content is not None:
        text = json.dumps(result.structured_content)
    return text[:MAX_RESULT_CHARS]


async def call_tool(
    tool: _Tool, arguments: dict[str, Any], servers: ToolServers, tier: str, left_s: float
) -> str:
    """Run one call; the tool's answer, or ``error: …`` for anything that went wrong."""
    timeout_s = max(0.0, min(float(_config()["tool_timeout_s"]), left_s))
    client, http = _client(servers.urls[tool.server], servers, tier, timeout_s or 0.001)
    started = time.perf_counter()
    outcome = "ok"
    try:
        async with asyncio.timeout(timeout_s), http, client:
            result = await client.call_tool(tool.name, arguments)
        if result.is_error:
            outcome = "error"
            return f"error: {_text(result)}"
        return _text(result)
    except TimeoutError:
        outcome = "timeout"
        return f"error: the tool {tool.name} did not answer within {timeout_s:.1f} s"
    except Exception as exc:  # the model sees the failure; the request goes on
        outcome = "error"
        return f"error: the tool {tool.name} failed: {type(exc).__name__}"
    finally:
        metrics.TOOL_SECONDS.labels(tool.server, tool.name, outcome).observe(
            time.perf_counter() - started
        )


def _arguments(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


async def _result_for(
    call: dict[str, Any],
    offered: Mapping[str, _Tool],
    known: Mapping[str, _Tool],
    servers: ToolServers,
    tier: str,
    left_s: float,
) -> str:
    function = call.get("function") or {}
    name = str(function.get("name", ""))
    if name not in known:
        metrics.TOOL_SECONDS.labels("none", "unknown", "refused").observe(0)
        return f"error: there is no tool named {name!r}"
    tool = known[name]
    if name not in offered:
        metrics.TOOL_SECONDS.labels(tool.server, tool.name, "refused").observe(0)
        return f"error: the {tier} tier may not call {name} (a {tool.kind} tool)"
    arguments = _arguments(function.get("arguments"))
    if arguments is None:
        metrics.TOOL_SECONDS.labels(tool.server, tool.name, "refused").observe(0)
        return f"error: the arguments of {name} are not a JSON object"
    if left_s <= 0:
        return f"error: no time left to call {name}"
    return await call_tool(tool, arguments, servers, tier, left_s)


async def relay(request: InferenceRequest, decision: RouteDecision, servers: ToolServers) -> Answer:
    """The chain's answer after running the model's tool calls, round after round."""
    tier = decision.tier
    config = _config()
    deadline_s = request.deadline_ms / 1000 if request.deadline_ms else float(config["deadline_s"])
    ends = time.monotonic() + deadline_s
    known = await list_tools(servers, tier) if OFFERED[tier] else {}
    offered = {name: tool for name, tool in known.items() if tool.kind in OFFERED[tier]}
    messages = list(request.messages)

    def ask(with_tools: bool, tool_choice: str | dict[str, Any] | None = None) -> InferenceRequest:
        left_ms = max(1.0, (ends - time.monotonic()) * 1000)
        with_tools = with_tools and bool(offered)
        return dataclasses.replace(
            request,
            messages=list(messages),
            tools=[t.spec for t in offered.values()] if with_tools else None,
            tool_choice=tool_choice if with_tools else None,
            deadline_ms=left_ms,
        )

    # The caller's tool_choice (e.g. one named tool) holds for the first round only: kept on
    # every round it would ask for the same tool until the rounds ran out.
    answer = await chains.answer(ask(True, request.tool_choice), decision)
    for _ in range(int(config["max_rounds"])):
        if not answer.tool_calls or not offered:
            break
        messages.append(
            {"role": "assistant", "content": answer.text, "tool_calls": answer.tool_calls}
        )
        for call in answer.tool_calls:
            content = await _result_for(
                call, offered, known, servers, tier, ends - time.monotonic()
            )
            messages.append(
                {"role": "tool", "tool_call_id": str(call.get("id", "")), "content": content}
            )
        answer = await chains.answer(ask(True), decision)
    if answer.tool_calls and offered:
        # Rounds spent: ask once more without tools, for an answer the caller can use.
        messages.append(
            {"role": "assistant", "content": answer.text, "tool_calls": answer.tool_calls}
        )
        for call in answer.tool_calls:
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": str(call.get("id", "")),
                    "content": "error: no more tool rounds; answer with what you have",
                }
            )
        answer = await chains.answer(ask(False), decision)
    # Tool calls left now would name tools the caller cannot run: only the text goes back (a
    # copy: the chain may still be caching the answer it returned).
    finish = "stop" if answer.finish_reason == "tool_calls" else answer.finish_reason
    return dataclasses.replace(answer, tool_calls=[], finish_reason=finish)
