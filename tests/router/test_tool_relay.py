"""The tool relay: a scripted engine answers with recorded tool calls, which the relay runs over the
real MCP servers of a live ASGI server of the application; and one round trip through the opt-in
OpenAI door against the real CPU engine."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from apps.admin_ops.models import ChangeRequest
from apps.npcs.models import GameStateEvent
from apps.router import metrics, tools
from apps.router.contracts import InferenceRequest
from apps.router.gateway import decide
from apps.security.scopes import ADMIN, INFER, LORE
from tests.router.conftest import LiveServer, tiers
from tests.support.scripted_engine import Script, ScriptedEngine, json_response

pytestmark = pytest.mark.django_db(transaction=True)

QUICK = {"connect": 0.5, "first_token": 5.0, "total": 10.0}


@pytest.fixture
def admin_key(make_key: Callable[..., str]) -> str:
    return make_key(ADMIN)


def tool_call(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def answers(*turns: dict[str, Any] | str) -> Script:
    """A script answering request n with ``turns[n]`` (the last one repeats): a string is a plain
    answer, a dict a recorded tool call."""
    served = 0

    async def script(writer: asyncio.StreamWriter) -> None:
        nonlocal served
        turn = turns[min(served, len(turns) - 1)]
        served += 1
        if isinstance(turn, str):
            message: dict[str, Any] = {"role": "assistant", "content": turn}
            finish = "stop"
        else:
            message = {"role": "assistant", "content": None, "tool_calls": [turn]}
            finish = "tool_calls"
        body = {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "model": "scripted",
            "choices": [{"index": 0, "finish_reason": finish, "message": message}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3},
        }
        writer.write(json_response(200, body, "OK"))

    return script


def ask(text: str = "What is Pell doing?") -> InferenceRequest:
    return InferenceRequest(messages=[{"role": "user", "content": text}], max_tokens=32)


def servers(server: LiveServer, key: str) -> tools.ToolServers:
    return tools.ToolServers(urls={"game_state": f"{server.url}/mcp/game_state/"}, credential=key)


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


def offered(request: dict[str, Any]) -> list[str]:
    return sorted(tool["function"]["name"] for tool in request.get("tools") or [])


async def test_a_read_tool_result_reaches_the_second_engine_call(
    asgi_server: LiveServer, admin_key: str, settings: Any
) -> None:
    settings.BODYBROKER_ENGINE_TIMEOUTS = QUICK
    script = answers(tool_call("game_state__get_npc_state", {"npc_id": "pell"}), "Pell waits.")
    async with ScriptedEngine(script) as engine:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [engine.base_url]})
        request = ask()
        answer = await tools.relay(
            request, decide("silver", request), servers(asgi_server, admin_key)
        )
    assert (answer.text, answer.tool_calls) == ("Pell waits.", [])
    first, second = engine.requests
    # Silver is offered the read tools only, never the one that asks for a change.
    assert offered(first) == ["game_state__get_npc_state", "game_state__get_world_state"]
    [result] = tool_messages(second)
    assert json.loads(result)["subject"] == "npc:pell"
    assert second["messages"][1]["tool_calls"][0]["function"]["name"] == (
        "game_state__get_npc_state"
    )
    assert second["messages"][2]["tool_call_id"] == "call_1"


async def test_a_tool_the_tier_may_not_call_is_an_error_the_model_sees(
    asgi_server: LiveServer, admin_key: str, settings: Any
) -> None:
    settings.BODYBROKER_ENGINE_TIMEOUTS = QUICK
    change = {"subject": "npc:pell", "changes": {"set": {"mood": "angry"}}, "reason": "plot"}
    script = answers(
        tool_call("game_state__queue_state_change", change),
        tool_call("game_state__delete_everything", {}, "call_2"),
        "I may not.",
    )
    async with ScriptedEngine(script) as engine:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [engine.base_url]})
        request = ask("Make Pell angry.")
        answer = await tools.relay(
            request, decide("silver", request), servers(asgi_server, admin_key)
        )
    assert answer.text == "I may not."
    refused, unknown = tool_messages(engine.requests[2])
    assert refused.startswith("error: the silver tier may not call game_state__queue_state_change")
    assert unknown == "error: there is no tool named 'game_state__delete_everything'"
    # No call was made: nothing queued, nothing asked for.
    assert not await GameStateEvent.objects.aexists()
    assert not await ChangeRequest.objects.aexists()


async def test_a_tool_that_times_out_is_an_error_and_the_answer_still_comes(
    asgi_server: LiveServer,
    admin_key: str,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from apps.npcs import mcp as game_state_mcp

    def slow_snapshot(subject: str) -> dict[str, Any]:
        time.sleep(2)
        return {"subject": subject}

    monkeypatch.setattr(game_state_mcp, "_snapshot", slow_snapshot)
    settings.BODYBROKER_ENGINE_TIMEOUTS = QUICK
    settings.BODYBROKER_TOOL_RELAY = {**settings.BODYBROKER_TOOL_RELAY, "tool_timeout_s": 0.5}
    before = metrics.TOOL_SECONDS.labels("game_state", "get_npc_state", "timeout")._sum.get()
    script = answers(tool_call("game_state__get_npc_state", {"npc_id": "pell"}), "No idea.")
    async with ScriptedEngine(script) as engine:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [engine.base_url]})
        request = ask()
        started = time.monotonic()
        answer = await tools.relay(
            request, decide("silver", request), servers(asgi_server, admin_key)
        )
    assert time.monotonic() - started < 2
    assert answer.text == "No idea."
    [result] = tool_messages(engine.requests[1])
    assert result == "error: the tool get_npc_state did not answer within 0.5 s"
    after = metrics.TOOL_SECONDS.labels("game_state", "get_npc_state", "timeout")._sum.get()
    assert after - before >= 0.5
    await asyncio.sleep(2)  # let the slow call finish before the server stops


async def test_rounds_are_bounded_and_the_last_call_offers_no_tools(
    asgi_server: LiveServer, admin_key: str, settings: Any
) -> None:
    settings.BODYBROKER_ENGINE_TIMEOUTS = QUICK
    settings.BODYBROKER_TOOL_RELAY = {**settings.BODYBROKER_TOOL_RELAY, "max_rounds": 2}
    script = answers(tool_call("game_state__get_world_state", {"region": "docks"}))
    async with ScriptedEngine(script) as engine:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [engine.base_url]})
        request = ask("What is happening at the docks?")
        answer = await tools.relay(
            request, decide("silver", request), servers(asgi_server, admin_key)
        )
    # The first call, two rounds of tool results, then one call without tools.
    assert len(engine.requests) == 4
    assert [bool(offered(r)) for r in engine.requests] == [True, True, True, False]
    assert answer.tool_calls == [] and answer.finish_reason == "stop"
    assert tool_messages(engine.requests[3])[-1].startswith("error: no more tool rounds")


async def test_gold_is_offered_no_tools(
    asgi_server: LiveServer, admin_key: str, settings: Any
) -> None:
    settings.BODYBROKER_ENGINE_TIMEOUTS = QUICK
    script = answers(tool_call("game_state__get_npc_state", {"npc_id": "pell"}))
    async with ScriptedEngine(script) as engine:
        settings.BODYBROKER_TIERS = tiers(gold={"urls": [engine.base_url]})
        request = ask()
        answer = await tools.relay(
            request, decide("gold", request), servers(asgi_server, admin_key)
        )
    [only] = engine.requests
    assert "tools" not in only or not only["tools"]
    assert (answer.tier, answer.tool_calls, answer.finish_reason) == ("gold", [], "stop")


def test_the_door_refuses_unknown_servers_and_mixed_tools(
    asgi_server: LiveServer, make_key: Callable[..., str]
) -> None:
    key = make_key(INFER, ADMIN)
    url = f"{asgi_server.url}/v1/chat/completions"
    body: dict[str, Any] = {"model": "silver", "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"Authorization": f"Bearer {key}", "X-Bodybroker-Tools": "game_state,nothing"}
    unknown = httpx.post(url, json=body, headers=headers, timeout=30)
    assert unknown.status_code == 400
    assert "unknown: nothing" in unknown.json()["error"]["message"]
    own = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    mixed = httpx.post(
        url,
        json={**body, "tools": [own]},
        headers={**headers, "X-Bodybroker-Tools": "game_state"},
        timeout=30,
    )
    assert mixed.status_code == 400
    assert mixed.json()["error"]["param"] == "tools"


def npc_state_calls() -> float:
    """How many get_npc_state calls the relay has counted, whatever their outcome."""
    return sum(
        sample.value
        for family in metrics.TOOL_SECONDS.collect()
        for sample in family.samples
        if sample.name.endswith("_count") and sample.labels["tool"] == "get_npc_state"
    )


@pytest.mark.engine
def test_the_opt_in_door_completes_a_round_trip_on_the_real_engine(
    asgi_server: LiveServer, make_key: Callable[..., str], engines: dict[str, str]
) -> None:
    key = make_key(INFER, ADMIN, LORE)
    before = npc_state_calls()
    response = httpx.post(
        f"{asgi_server.url}/v1/chat/completions",
        json={
            "model": "silver",
            "messages": [{"role": "user", "content": "Use a tool: what is NPC pell doing?"}],
            "max_tokens": 160,
            "temperature": 0,
            "tool_choice": {"type": "function", "function": {"name": "game_state__get_npc_state"}},
        },
        headers={"Authorization": f"Bearer {key}", "X-Bodybroker-Tools": "game_state,rag"},
        timeout=240,
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert response.headers["x-bodybroker-tier"] == "silver"
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] != "tool_calls"
    # The forced first round reached the relay (a small model's arguments may not parse: then
    # the model is told so, and the call is counted as refused).
    assert npc_state_calls() > before
