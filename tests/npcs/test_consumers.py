"""The game websocket: who may connect, ping, and bad frames that leave the socket open."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from channels.testing import WebsocketCommunicator

from bodybroker.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def connect(
    *, key: str | None = None, query: str = "", headers: list[tuple[bytes, bytes]] | None = None
) -> WebsocketCommunicator:
    all_headers = list(headers or [])
    if key:
        all_headers.append((b"authorization", f"Bearer {key}".encode()))
    path = "/ws/game/" + (f"?{query}" if query else "")
    return WebsocketCommunicator(application, path, headers=all_headers)


async def test_an_anonymous_client_is_refused() -> None:
    communicator = connect()
    connected, _ = await communicator.connect()
    assert connected is False


async def test_a_key_without_the_game_scope_is_refused(make_key: Callable[..., str]) -> None:
    communicator = connect(key=await _key(make_key, "infer"))
    connected, _ = await communicator.connect()
    assert connected is False


async def test_a_game_key_connects_and_ping_gets_pong(make_key: Callable[..., str]) -> None:
    communicator = connect(key=await _key(make_key, "game"))
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to(text_data=json.dumps({"type": "ping", "ref": 7}))
    pong = json.loads(await communicator.receive_from())
    assert pong["type"] == "pong" and pong["ref"] == 7 and pong["protocol"] == 1
    await communicator.disconnect()


async def test_the_key_may_come_in_the_query_string(make_key: Callable[..., str]) -> None:
    communicator = connect(query=f"api_key={await _key(make_key, 'game')}")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{oops", "invalid_json"),
        ("[1, 2]", "bad_frame"),
        ('{"type": 5}', "bad_frame"),
        ('{"type": "teleport", "ref": "r1"}', "unknown_type"),
        ('{"type": "ping", "pad": "' + "x" * 20_000 + '"}', "too_large"),
        # past float's range: the standard parser reads it, float() cannot take it
        (
            '{"type": "state.update", "npc_id": "n", "state": {"pos": [1' + "0" * 400 + ", 2]}}",
            "bad_field",
        ),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_open(
    make_key: Callable[..., str], frame: str, code: str
) -> None:
    communicator = connect(key=await _key(make_key, "game"))
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data=frame)
    error = json.loads(await communicator.receive_from())
    assert error["type"] == "error" and error["code"] == code and error["message"]
    await communicator.send_to(text_data='{"type": "ping"}')
    assert json.loads(await communicator.receive_from())["type"] == "pong"
    await communicator.disconnect()


async def test_a_binary_frame_gets_an_error(make_key: Callable[..., str]) -> None:
    communicator = connect(key=await _key(make_key, "game"))
    assert (await communicator.connect())[0]
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert json.loads(await communicator.receive_from())["code"] == "bad_frame"
    await communicator.disconnect()


async def _key(make_key: Callable[..., str], *scopes: str) -> str:
    from asgiref.sync import sync_to_async

    return await sync_to_async(make_key)(*scopes)
