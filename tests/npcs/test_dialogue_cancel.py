"""A reply the player cancels, or whose socket closes, stops the engine's generation: the real
app on uvicorn, the real game-client library, the real CPU engines.

The Silver engine serves one request at a time, so a reply nobody hears would delay every
request behind it: each test stops a reply after a few tokens and times a short request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from apps.npcs.services import npc_create
from apps.router.metrics import REGISTRY
from npc_runtime.client import GameClient
from tests.support.live_asgi import serve_asgi
from tests.support.long_answers import assert_not_delayed, short_request_s

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

LINE = "Tell me everything that ever happened in this house, every night, in every detail."


def cancelled(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "bodybroker_generations_cancelled_total", {"tier": "silver", "reason": reason}
    )
    return value or 0.0


@pytest.fixture
def teller(db: None) -> str:
    npc_create(
        slug="mara",
        fields={
            "name": "Mara Voss",
            "role": "the house's last caretaker, who never stops talking",
            "archetype": "civilian",
            "micro_policy": "civilian",
            "safety_lines": ["Mara folds her hands and says nothing more."],
            "dialogue_max_tokens": 512,
        },
    )
    return "mara"


async def _talk_then(url: str, key: str, npc: str, stop: str) -> int:
    """Hear a few tokens of a reply, then stop it (``cancel`` or ``close``); returns the tokens
    heard."""
    # The first game socket also loads the lore embedder: the first token may take a while.
    async with await GameClient.connect(url, api_key=key, request_timeout=60) as client:
        stream = await client.say(npc, LINE)
        tokens = stream.__aiter__()
        heard = 0
        for _ in range(3):
            await anext(tokens)
            heard += 1
        if stop == "cancel":
            await stream.cancel()
            async for _token in tokens:  # what was already on its way, then done
                heard += 1
            assert stream.done is not None and stream.done.cancelled
        else:
            await client.close()
    return heard


def test_dialogue_cancel_stops_the_engine(
    make_key: Callable[..., str], engines: dict[str, str], teller: str
) -> None:
    key = make_key("game")
    alone = short_request_s(engines["silver"], "silver")
    before = cancelled("dialogue_cancel")
    with serve_asgi() as url:
        heard = asyncio.run(
            _talk_then(url.replace("http", "ws") + "/ws/game/", key, teller, "cancel")
        )
        assert_not_delayed(engines["silver"], "silver", alone)

    assert heard >= 3
    assert cancelled("dialogue_cancel") == before + 1


def test_a_socket_closed_mid_reply_stops_the_engine(
    make_key: Callable[..., str], engines: dict[str, str], teller: str
) -> None:
    key = make_key("game")
    alone = short_request_s(engines["silver"], "silver")
    before = cancelled("client_disconnect")
    with serve_asgi() as url:
        asyncio.run(_talk_then(url.replace("http", "ws") + "/ws/game/", key, teller, "close"))
        assert_not_delayed(engines["silver"], "silver", alone)
        deadline = time.monotonic() + 5
        while cancelled("client_disconnect") == before and time.monotonic() < deadline:
            time.sleep(0.02)

    assert cancelled("client_disconnect") == before + 1
