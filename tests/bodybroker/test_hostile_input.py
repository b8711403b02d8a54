"""Hostile input on every door of the real stack (``bodybroker.asgi`` on uvicorn): a body nested
100,000 deep, and numbers no field can hold, are 400s in each door's error shape and counted in
the error metric; a websocket to a path with no route is refused, not a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import websockets

from apps.router import metrics
from apps.security.scopes import ALL_SCOPES
from tests.support.live_asgi import serve_asgi

pytestmark = pytest.mark.django_db(transaction=True)

DEEP = b"[" * 100_000
HUGE = "1" + "0" * 400  # an integer literal: float() of it raises OverflowError
REST_DOORS = ["/api/v1/infer", "/api/v1/lore/", "/api/v1/change-requests/", "/api/v1/npcs/"]
CHAT = {"model": "gold", "messages": [{"role": "user", "content": "Who goes there?"}]}


@pytest.fixture
def server(transactional_db: None) -> Iterator[str]:
    with serve_asgi() as url:
        yield url


@pytest.fixture
def headers(make_key: Callable[..., str]) -> dict[str, str]:
    """A key that may use every door, so each body is read (scopes are checked first)."""
    return {"Authorization": f"Bearer {make_key(*ALL_SCOPES)}"}


def errors_counted(status: int) -> float:
    sample = metrics.REGISTRY.get_sample_value(
        "bodybroker_request_errors_total", {"tier": "none", "kind": f"http_{status}"}
    )
    return sample or 0.0


def post(server: str, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(
        server + path,
        content=body,
        headers={**headers, "Content-Type": "application/json"},
        timeout=60,
    )


@pytest.mark.parametrize("path", REST_DOORS)
def test_a_body_nested_100000_deep_is_a_counted_400_on_every_rest_door(
    server: str, headers: dict[str, str], path: str
) -> None:
    before = errors_counted(400)
    response = post(server, path, headers, DEEP)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert "64 levels" in error["message"] or "brackets" in error["message"]
    assert errors_counted(400) == before + 1


@pytest.mark.parametrize("path", REST_DOORS)
@pytest.mark.parametrize("field", ["max_tokens", "seed", "temperature"])
def test_a_number_no_field_can_hold_is_a_400_naming_the_field_on_every_rest_door(
    server: str, headers: dict[str, str], path: str, field: str
) -> None:
    before = errors_counted(400)
    body = '{"prompt": "Who goes there?", "' + field + '": ' + HUGE + "}"
    response = post(server, path, headers, body.encode())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert list(error["fields"]) == [field]
    assert "64 bits" in error["fields"][field][0]
    assert errors_counted(400) == before + 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (DEEP, None),
        (b"[" * 100_000 + b"]" * 100_000, None),
        (json.dumps(CHAT)[:-1].encode() + b', "max_tokens": ' + HUGE.encode() + b"}", "max_tokens"),
        (
            json.dumps(CHAT)[:-1].encode() + b', "max_completion_tokens": ' + HUGE.encode() + b"}",
            "max_completion_tokens",
        ),
        (json.dumps(CHAT)[:-1].encode() + b', "seed": -' + HUGE.encode() + b"}", "seed"),
        (json.dumps(CHAT)[:-1].encode() + b', "temperature": 1e400}', "temperature"),
        (json.dumps(CHAT)[:-1].encode() + b', "temperature": NaN}', "temperature"),
        (
            b'{"model": "gold", "messages": [{"role": "user", "content": "x", "n": [1, '
            + HUGE.encode()
            + b"]}]}",
            "messages[0].n[1]",
        ),
    ],
    ids=[
        "deep",
        "deep-balanced",
        "max_tokens",
        "max_completion_tokens",
        "seed",
        "temperature-1e400",
        "nan",
        "nested",
    ],
)
def test_hostile_bodies_on_the_openai_door_are_counted_400s_in_openai_shape(
    server: str, headers: dict[str, str], body: bytes, param: str | None
) -> None:
    before = errors_counted(400)
    response = post(server, "/v1/chat/completions", headers, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert errors_counted(400) == before + 1


def test_numbers_that_parse_but_no_field_takes_are_field_errors_on_the_infer_door(
    server: str, headers: dict[str, str]
) -> None:
    for field, value in [("max_tokens", 2**64 - 1), ("seed", 2**63), ("temperature", 1.5e308)]:
        body = json.dumps({"prompt": "Who goes there?", field: value}).encode()
        response = post(server, "/api/v1/infer", headers, body)
        assert response.status_code == 400, (field, response.text)
        assert list(response.json()["error"]["fields"]) == [field]


def test_numbers_that_parse_but_no_field_takes_are_field_errors_on_the_openai_door(
    server: str, headers: dict[str, str]
) -> None:
    # Within 64 bits, so read exactly, but past each field's range.
    for field, value in [
        ("max_tokens", 2**64 - 1),
        ("max_completion_tokens", 10**19),
        ("seed", 2**63),
        ("temperature", 1.5e308),
    ]:
        response = post(
            server, "/v1/chat/completions", headers, json.dumps({**CHAT, field: value}).encode()
        )
        assert response.status_code == 400, (field, response.text)
        assert response.json()["error"]["param"] == field


@pytest.mark.parametrize("path", ["/mcp/storyteller/", "/mcp/admin/"])
def test_a_body_nested_100000_deep_is_a_counted_400_on_the_mcp_doors(
    server: str, headers: dict[str, str], path: str
) -> None:
    # The MCP SDK reads these bodies itself (a bounded parser of its own); the door counts them.
    before = errors_counted(400)
    response = post(
        server, path, {**headers, "Accept": "application/json, text/event-stream"}, DEEP
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == -32700  # JSON-RPC's parse error
    assert errors_counted(400) == before + 1


def test_a_socket_to_an_unknown_path_is_a_404_in_the_api_shape_and_the_game_socket_still_opens(
    server: str, make_key: Callable[..., str]
) -> None:
    key = make_key("game")
    base = server.replace("http", "ws")

    async def handshake(path: str) -> Any:
        auth = {"Authorization": f"Bearer {key}"}
        try:
            async with websockets.connect(base + path, additional_headers=auth) as socket:
                await socket.send(json.dumps({"type": "ping", "ref": 1}))
                return json.loads(await socket.recv())
        except websockets.InvalidStatus as refused:
            return refused.response

    for path in ("/ws/nowhere/", "/ws/game/extra/", "/v1/chat/completions"):
        refused = asyncio.run(handshake(path))
        assert refused.status_code == 404, path
        assert json.loads(refused.body)["error"]["type"] == "not_found"
    pong = asyncio.run(handshake("/ws/game/"))
    assert (pong["type"], pong["ref"]) == ("pong", 1)
