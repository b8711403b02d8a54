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
    npc_create(
        slug="pell",
        fields={
            "name": "Old Pell",
            "role": "night watchman",
            "archetype": "guard",
            "micro_policy": "guard",
            "safety_lines": ["Pell spits into the water."],
        },
    )
    key = make_key("game")
    with serve_asgi() as url:
        asyncio.run(_play(url.replace("http", "ws") + "/ws/game/", key))


async def _play(url: str, key: str) -> None:
    async with await GameClient.connect(url, api_key=key) as client:
        assert client.welcome is not None and client.welcome.protocol == 2
        allowed = {npc: (await client.subscribe(npc)).allowed_intents for npc in ("edda", "pell")}
        states = {
            "edda": NpcState(npc_id="edda", fear=0.9, player_visible=True, player_x=2, player_y=1),
            "pell": NpcState(npc_id="pell", x=4, player_visible=True, player_x=6, player_y=5),
        }
        await client.send_states(states)  # one state.batch for both
        from_model: set[str] = set()
        async with asyncio.timeout(60):
            async for intent in client.intents():
                assert intent.intent in allowed[intent.npc_id]
                assert intent.source in {"model", "cache", "policy"}
                if intent.source == "model":
                    from_model.add(intent.npc_id)
                if from_model == set(states):
                    break
                for state in states.values():  # the game moves on; the model keeps up
                    state.tick += 1
                await client.send_states(states)
        answered = await client.get_intents(["pell", "edda"])  # one intents.get
        assert [intent.npc_id for intent in answered] == ["pell", "edda"]
        assert all(intent.intent in allowed[intent.npc_id] for intent in answered)
        for _ in range(300):  # five seconds of frames at 60 FPS, never awaiting the network
            action = client.frame("edda", states["edda"], 1 / 60)
        assert action.animation
        stream = await client.say("edda", "Is anyone down here?")
        tokens = [token async for token in stream]
        assert stream.done is not None and stream.done.text == "".join(tokens)
        assert stream.done.source in {"model", "safety"}
