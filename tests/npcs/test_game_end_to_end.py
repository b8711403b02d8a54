"""End to end: the real app on uvicorn, the real game-client library, the real CPU engines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from apps.npcs.services import npc_create
from npc_runtime.client import GameClient
from npc_runtime.policies import NpcState
from tests.support.live_asgi import serve_asgi

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


def test_a_game_client_gets_model_intents_runs_frames_and_talks(
    make_key: Callable[..., str], engines: dict[str, str], settings: Any
) -> None:
    settings.BODYBROKER_INTENT_UPDATER_IN_PROCESS = True  # the server runs the updater
    npc_create(
        slug="edda",
        fields={
            "name": "Edda Krall",
            "role": "night mortician",
            "archetype": "civilian",
            "micro_policy": "civilian",
            "safety_lines": ["Edda pulls the sheet back: go home."],
        },
    )
    key = make_key("game")
    with serve_asgi() as url:
        asyncio.run(_play(url.replace("http", "ws") + "/ws/game/", key))


async def _play(url: str, key: str) -> None:
    async with await GameClient.connect(url, api_key=key) as client:
        subscribed = await client.subscribe("edda")
        state = NpcState(npc_id="edda", fear=0.9, player_visible=True, player_x=2, player_y=1)
        await client.send_state("edda", state)
        intent = await asyncio.wait_for(anext(client.intents()), timeout=30)
        assert intent.npc_id == "edda" and intent.intent in subscribed.allowed_intents
        assert intent.source in {"model", "policy"}
        for _ in range(300):  # five seconds of frames at 60 FPS, never awaiting the network
            action = client.frame("edda", state, 1 / 60)
        assert action.animation
        stream = await client.say("edda", "Is anyone down here?")
        tokens = [token async for token in stream]
        assert stream.done is not None and stream.done.text == "".join(tokens)
        assert stream.done.source in {"model", "safety"}
