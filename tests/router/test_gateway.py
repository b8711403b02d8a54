"""The OpenAI-compatible door, through a real server and the official ``openai`` client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from apps.router.gateway import BadRequest, parse_chat_request
from apps.security.models import ApiKey
from tests.router.conftest import LiveServer

pytestmark = pytest.mark.django_db(transaction=True)


def client(server: LiveServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)


@pytest.mark.engine
def test_the_openai_client_gets_an_answer_with_tier_headers(
    asgi_server: LiveServer, make_key: Callable[..., str], engines: dict[str, str]
) -> None:
    raw = client(asgi_server, make_key("infer")).chat.completions.with_raw_response.create(
        model="silver",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.model == "silver"
    assert 0 < completion.usage.completion_tokens <= 8
    assert raw.headers["x-bodybroker-tier"] == "silver"
    assert raw.headers["x-bodybroker-source"] == "model"
    assert float(raw.headers["x-bodybroker-overhead-ms"]) >= 0


@pytest.mark.engine
def test_streaming_through_the_openai_client(
    asgi_server: LiveServer, make_key: Callable[..., str], engines: dict[str, str]
) -> None:
    stream = client(asgi_server, make_key("infer")).chat.completions.create(
        model="gold",
        messages=[{"role": "user", "content": "Pick: flee or hide."}],
        max_tokens=8,
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}


@pytest.mark.engine
def test_tools_reach_the_engine_and_come_back_as_tool_calls(
    asgi_server: LiveServer, make_key: Callable[..., str], engines: dict[str, str]
) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_npc_state",
            "description": "Read an NPC's state",
            "parameters": {
                "type": "object",
                "properties": {"npc_id": {"type": "string", "enum": ["pell", "edda"]}},
                "required": ["npc_id"],
            },
        },
    }
    completion = client(asgi_server, make_key("infer")).chat.completions.create(
        model="silver",
        messages=[{"role": "user", "content": "What is Pell doing?"}],
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_npc_state"}},
        max_tokens=160,
        temperature=0,
    )
    calls = completion.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_npc_state"
    assert completion.choices[0].finish_reason == "tool_calls"
    assert json.loads(calls[0].function.arguments)["npc_id"] in {"pell", "edda"}


@pytest.mark.engine
def test_json_schema_is_translated_for_the_cpu_engine(
    asgi_server: LiveServer, make_key: Callable[..., str], engines: dict[str, str]
) -> None:
    schema = {
        "type": "object",
        "properties": {"intent": {"type": "string", "enum": ["idle", "hide", "flee"]}},
        "required": ["intent"],
    }
    completion = client(asgi_server, make_key("infer")).chat.completions.create(
        model="gold",
        messages=[{"role": "user", "content": "A scream. What do you do?"}],
        max_tokens=16,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "intent", "schema": schema},
        },
    )
    assert json.loads(completion.choices[0].message.content)["intent"] in {"idle", "hide", "flee"}


def test_models_lists_the_tiers(asgi_server: LiveServer, make_key: Callable[..., str]) -> None:
    models = client(asgi_server, make_key("infer")).models.list()
    assert {m.id for m in models.data} == {"gold", "silver", "bronze", "auto"}


def test_a_missing_or_wrong_key_is_a_401_in_openai_shape(asgi_server: LiveServer) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(asgi_server, "bb_nope_nope").models.list()
    assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    response = httpx.get(f"{asgi_server.url}/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_a_key_without_infer_is_a_403(
    asgi_server: LiveServer, make_key: Callable[..., str]
) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        client(asgi_server, make_key("game")).models.list()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{nope", None),
        (b"[]", None),
        (b'{"model": "platinum", "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "gold", "messages": []}', "messages"),
        (b'{"model": "gold", "messages": [{"role": "x", "content": "y"}]}', "messages[0].role"),
        (b'{"model": "gold", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
        (
            b'{"model": "gold", "messages": [{"role": "user", "content": "x"}], "max_tokens": "8"}',
            "max_tokens",
        ),
        (
            b'{"model": "gold", "messages": [{"role": "user", "content": "x"}], "temperature": 9}',
            "temperature",
        ),
        (
            b'{"model": "gold", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "stream",
        ),
        (
            b'{"model": "gold", "messages": [{"role": "user", "content": "x"}], "frobnicate": 1}',
            "frobnicate",
        ),
        (b'{"model": "gold", "messages": [{"role": "user", "content": "x"}], "sla": "now"}', "sla"),
    ],
)
def test_malformed_requests_name_the_parameter(body: bytes, param: str | None) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_chat_request(body)
    assert caught.value.status == 400
    assert caught.value.param == param


def test_bad_requests_over_http_are_openai_errors(
    asgi_server: LiveServer, make_key: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {make_key('infer')}"}
    response = httpx.post(
        f"{asgi_server.url}/v1/chat/completions",
        headers=headers,
        content=b'{"model": "gold", "messages": [], "x": 1}',
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == "x"
    huge = b'{"model": "gold", "messages": [{"role": "user", "content": "' + b"x" * 1_100_000
    response = httpx.post(
        f"{asgi_server.url}/v1/chat/completions", headers=headers, content=huge + b'"}]}'
    )
    assert response.status_code == 413
    assert httpx.get(f"{asgi_server.url}/v1/chat/completions", headers=headers).status_code == 405


def test_a_prompt_in_content_parts_is_measured_like_a_string(
    asgi_server: LiveServer, make_key: Callable[..., str], settings: Any
) -> None:
    settings.BODYBROKER_TIERS = {  # no engine: answers come from the template link, instantly
        tier: {"urls": [], "model": tier, "fallback_urls": []}
        for tier in ("gold", "silver", "bronze")
    }
    settings.BODYBROKER_MAX_PROMPT_CHARS = 100
    headers = {"Authorization": f"Bearer {make_key('infer')}"}
    url = f"{asgi_server.url}/v1/chat/completions"

    def chat(content: Any) -> dict[str, Any]:
        return {"model": "silver", "messages": [{"role": "user", "content": content}]}

    def parts(*texts: str) -> list[dict[str, str]]:
        return [{"type": "text", "text": text} for text in texts]

    assert httpx.post(url, json=chat("x" * 101), headers=headers).status_code == 400
    over = httpx.post(url, json=chat(parts("x" * 60, "y" * 41)), headers=headers)
    assert over.status_code == 400
    assert over.json()["error"]["param"] == "messages"
    assert "101 characters" in over.json()["error"]["message"]
    under = httpx.post(url, json=chat(parts("x" * 60, "y" * 40)), headers=headers)
    assert under.status_code == 200, under.text
    # A part the engines cannot read is named, not passed on unmeasured.
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 500}}
    refused = httpx.post(url, json=chat([*parts("hi"), image]), headers=headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "messages[0].content[1]"
    # Routing sees the parts' length too.
    as_parts = parse_chat_request(json.dumps(chat(parts("a" * 40, "b" * 40))).encode())[2]
    as_string = parse_chat_request(json.dumps(chat("a" * 40 + "b" * 40)).encode())[2]
    assert as_parts.context_tokens == as_string.context_tokens == 24


def test_requests_per_minute_are_limited_with_retry_after(
    asgi_server: LiveServer, make_key: Callable[..., str], settings: Any
) -> None:
    settings.BODYBROKER_TIERS = {  # no engine: answers come from the template link, instantly
        tier: {"urls": [], "model": tier, "fallback_urls": []}
        for tier in ("gold", "silver", "bronze")
    }
    raw = make_key("infer")
    ApiKey.objects.filter(name="test key").update(requests_per_minute=2)
    body = {"model": "silver", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {raw}"}
    codes = [
        httpx.post(f"{asgi_server.url}/v1/chat/completions", json=body, headers=headers)
        for _ in range(3)
    ]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert codes[0].headers["x-bodybroker-source"] == "template"
    assert codes[2].json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(codes[2].headers["retry-after"]) <= 60


def test_a_spent_daily_budget_is_a_429(
    asgi_server: LiveServer, make_key: Callable[..., str]
) -> None:
    from django.utils import timezone

    from apps.router.models import UsageDaily

    raw = make_key("infer")
    key = ApiKey.objects.get(name="test key")
    ApiKey.objects.filter(pk=key.pk).update(daily_budget_usd=0.5)
    UsageDaily.objects.create(
        day=timezone.now().date(), tier="silver", key=key, requests=9, cost_usd=0.75
    )
    response = httpx.post(
        f"{asgi_server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {raw}"},
        json={"model": "silver", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "budget_limit"


def test_tokens_per_minute_are_limited_after_the_answer_that_crossed_them(
    asgi_server: LiveServer, make_key: Callable[..., str], settings: Any
) -> None:
    import asyncio
    import threading

    from tests.support.scripted_engine import ScriptedEngine, completion

    loop = asyncio.new_event_loop()
    engine = ScriptedEngine(completion("many words here", completion_tokens=40))
    loop.run_until_complete(engine.__aenter__())
    threading.Thread(target=loop.run_forever, daemon=True).start()
    try:
        settings.BODYBROKER_TIERS = {
            tier: {
                "urls": [engine.base_url] if tier == "silver" else [],
                "model": tier,
                "fallback_urls": [],
            }
            for tier in ("gold", "silver", "bronze")
        }
        raw = make_key("infer")
        ApiKey.objects.filter(name="test key").update(tokens_per_minute=50)
        body = {"model": "silver", "messages": [{"role": "user", "content": "talk"}]}
        headers = {"Authorization": f"Bearer {raw}"}
        url = f"{asgi_server.url}/v1/chat/completions"
        first = httpx.post(url, json=body, headers=headers)
        assert first.status_code == 200  # 45 tokens (5 in, 40 out): under 50 when it started
        deadline = time.monotonic() + 5
        second = httpx.post(url, json=body, headers=headers)
        while second.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)  # the first answer's tokens are counted just after it is sent
            second = httpx.post(url, json=body, headers=headers)
        assert second.status_code == 429
        assert second.json()["error"]["code"] == "tokens_limit"
    finally:
        loop.call_soon_threadsafe(loop.stop)
