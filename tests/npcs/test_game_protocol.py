"""The game protocol over ``/ws/game/``: subscriptions, state, intents, dialogue, limits."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from apps.npcs import intents
from apps.npcs.live import live_store
from apps.npcs.models import DialogueTurn
from apps.npcs.services import npc_create
from apps.npcs.updater import IntentUpdater
from bodybroker.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
CLOSED = "http://127.0.0.1:9"
SAFETY = 'Pell spits into the water. "Not tonight."'
STATE = {
    "pos": [0, 0],
    "fear": 0.2,
    "health": 1.0,
    "player": {"pos": [3, 4], "visible": True},
    "noise": 0.8,
}


@pytest.fixture(autouse=True)
async def _fresh_live_state() -> Any:
    await live_store().clear()
    intents.forget_briefs()
    yield
    await live_store().clear()


async def watchman() -> None:
    await sync_to_async(npc_create)(
        slug="pell",
        fields={
            "name": "Old Pell",
            "role": "night watchman",
            "archetype": "guard",
            "micro_policy": "guard",
            "safety_lines": [SAFETY],
        },
    )


async def connect(make_key: Callable[..., str]) -> WebsocketCommunicator:
    key = await sync_to_async(make_key)("game")
    communicator = WebsocketCommunicator(
        application, "/ws/game/", headers=[(b"authorization", f"Bearer {key}".encode())]
    )
    assert (await communicator.connect())[0]
    return communicator


async def send(communicator: WebsocketCommunicator, **frame: Any) -> None:
    await communicator.send_to(text_data=json.dumps(frame))


async def receive(communicator: WebsocketCommunicator, timeout: float = 5) -> dict[str, Any]:
    return dict(json.loads(await communicator.receive_from(timeout=timeout)))


def dead_tiers(settings: Any) -> None:
    settings.BODYBROKER_TIERS = {
        tier: {"urls": [CLOSED], "model": tier, "fallback_urls": [CLOSED]}
        for tier in ("gold", "silver", "bronze")
    }
    settings.BODYBROKER_ENGINE_TIMEOUTS = {"connect": 0.3, "first_token": 1, "total": 2}


async def test_hello_subscribe_and_intent_get_answer_at_once(make_key: Callable[..., str]) -> None:
    await watchman()
    ws = await connect(make_key)
    await send(ws, type="hello", protocol=1, ref="h")
    assert (await receive(ws))["type"] == "welcome"
    await send(ws, type="npc.subscribe", npc_id="pell", ref="s")
    subscribed = await receive(ws)
    assert subscribed["type"] == "npc.subscribed" and subscribed["policy"] == "guard"
    assert "patrol" in subscribed["allowed_intents"]
    await send(ws, type="state.update", npc_id="pell", state=STATE)
    await send(ws, type="intent.get", npc_id="pell", ref=7)
    intent = await receive(ws)
    assert (intent["type"], intent["ref"], intent["source"]) == ("intent", 7, "policy")
    assert intent["intent"] in subscribed["allowed_intents"]
    await ws.disconnect()


async def test_unknown_npcs_and_unsubscribed_state_are_errors_and_the_socket_lives(
    make_key: Callable[..., str],
) -> None:
    ws = await connect(make_key)
    await send(ws, type="npc.subscribe", npc_id="nobody", ref=1)
    assert (await receive(ws))["code"] == "unknown_npc"
    await send(ws, type="state.update", npc_id="nobody", state=STATE, ref=2)
    error = await receive(ws)
    assert (error["code"], error["ref"]) == ("not_subscribed", 2)
    await send(ws, type="hello", protocol=99)
    assert (await receive(ws))["code"] == "unsupported_version"
    await send(ws, type="ping")
    assert (await receive(ws))["type"] == "pong"
    await ws.disconnect()


async def mourner() -> None:
    await sync_to_async(npc_create)(
        slug="mourner",
        fields={
            "name": "The Mourner",
            "archetype": "civilian",
            "micro_policy": "civilian",
            "safety_lines": ["She only weeps."],
        },
    )


async def test_protocol_2_sends_many_states_and_asks_many_intents_in_one_frame(
    make_key: Callable[..., str],
) -> None:
    await watchman()
    await mourner()
    ws = await connect(make_key)
    await send(ws, type="hello", protocol=2, ref="h")
    assert (await receive(ws))["protocol"] == 2
    for npc in ("pell", "mourner"):
        await send(ws, type="npc.subscribe", npc_id=npc)
        await receive(ws)
    calm = {"pos": [1, 1], "fear": 0.0, "player": {"pos": [40, 40], "visible": False}}
    await send(ws, type="state.batch", states={"pell": STATE, "mourner": calm}, ref="b")
    await send(ws, type="intents.get", npc_ids=["mourner", "pell"], ref="g")
    answer = await receive(ws)
    assert (answer["type"], answer["ref"]) == ("intents", "g")
    assert [item["npc_id"] for item in answer["intents"]] == ["mourner", "pell"]
    assert {item["source"] for item in answer["intents"]} == {"policy"}
    # The policy answers from the batch's states: the guard sees a player 5 m away.
    assert answer["intents"][1]["intent"] in {"investigate", "approach_player", "attack"}
    # Both states reach the live store, where the intent updater reads them.
    for _ in range(100):
        if await live_store().get_state("mourner") is not None:
            break
        await asyncio.sleep(0.02)
    pell, mourning = await live_store().get_states(["pell", "mourner"])
    assert pell is not None and pell.state == STATE
    assert mourning is not None and mourning.state == calm
    await ws.disconnect()


async def test_a_batch_with_one_bad_npc_keeps_nothing_and_names_it(
    make_key: Callable[..., str],
) -> None:
    await watchman()
    ws = await connect(make_key)
    await send(ws, type="hello", protocol=2)
    await receive(ws)
    await send(ws, type="npc.subscribe", npc_id="pell")
    await receive(ws)
    await send(ws, type="state.batch", states={"pell": STATE, "ghost": STATE}, ref=3)
    error = await receive(ws)
    assert (error["code"], error["ref"], error["field"]) == ("not_subscribed", 3, "states.ghost")
    bad = {"pell": STATE, "mourner": {"pos": [0, 0], "fear": 3}}
    await send(ws, type="state.batch", states=bad, ref=4)
    error = await receive(ws)
    assert (error["code"], error["field"]) == ("bad_field", "states.mourner.fear")
    await send(ws, type="intents.get", npc_ids=["pell", "ghost"], ref=5)
    error = await receive(ws)
    assert (error["code"], error["ref"]) == ("unknown_npc", 5)
    await asyncio.sleep(0.25)  # past a state flush: nothing of the refused batches was kept
    assert await live_store().get_state("pell") is None
    await send(ws, type="ping", ref=6)
    assert (await receive(ws))["type"] == "pong"
    await ws.disconnect()


async def test_integers_past_64_bits_are_bad_fields_and_the_socket_lives(
    make_key: Callable[..., str],
) -> None:
    await watchman()
    ws = await connect(make_key)
    await send(ws, type="hello", protocol=2)
    await receive(ws)
    await send(ws, type="npc.subscribe", npc_id="pell")
    await receive(ws)
    huge = "1" + "0" * 400
    for frame in (
        '{"type": "intent.get", "npc_id": "pell", "ref": ' + huge + "}",
        '{"type": "intents.get", "npc_ids": ["pell"], "ref": ' + huge + "}",
    ):
        await ws.send_to(text_data=frame)
        error = await receive(ws)
        assert (error["type"], error["code"], error["field"], error["ref"]) == (
            "error",
            "bad_field",
            "ref",
            None,
        )
    state = '{"pos": [0, 0], "tick": ' + huge + "}"
    await ws.send_to(
        text_data='{"type": "state.batch", "states": {"pell": ' + state + '}, "ref": "b"}'
    )
    error = await receive(ws)
    assert (error["code"], error["field"], error["ref"]) == ("bad_field", "states.pell.tick", "b")
    # The socket is still open and usable; the largest 64-bit ref comes back exact.
    await send(ws, type="intent.get", npc_id="pell", ref=2**64 - 1)
    intent = await receive(ws)
    assert (intent["type"], intent["ref"]) == ("intent", 2**64 - 1)
    await send(ws, type="intents.get", npc_ids=["pell"], ref=-(2**63))
    answer = await receive(ws)
    assert (answer["type"], answer["ref"]) == ("intents", -(2**63))
    await asyncio.sleep(0.25)  # past a state flush: the refused state was not kept
    assert await live_store().get_state("pell") is None
    await ws.disconnect()


async def test_a_server_fault_on_a_frame_is_an_internal_error_and_the_socket_lives(
    make_key: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await watchman()
    ws = await connect(make_key)

    async def store_down(self: Any, npc_id: str) -> None:
        raise ConnectionError("the live store went away")

    monkeypatch.setattr(type(live_store()), "get_intent", store_down)
    await send(ws, type="intent.get", npc_id="pell", ref="i")  # not subscribed: asks the store
    error = await receive(ws)
    assert (error["type"], error["code"], error["ref"]) == ("error", "internal", "i")
    monkeypatch.undo()
    await send(ws, type="intent.get", npc_id="pell", ref="again")
    assert (await receive(ws))["type"] == "intent"
    await ws.disconnect()


async def test_a_socket_to_an_unknown_path_is_refused_at_the_handshake(
    make_key: Callable[..., str],
) -> None:
    key = await sync_to_async(make_key)("game")
    for path in ("/ws/nowhere/", "/ws/game/extra/", "/"):
        communicator = WebsocketCommunicator(
            application, path, headers=[(b"authorization", f"Bearer {key}".encode())]
        )
        connected, _code = await communicator.connect()
        assert not connected
        await communicator.wait()


async def test_intents_published_together_are_pushed_in_one_frame_in_protocol_2(
    make_key: Callable[..., str], settings: Any
) -> None:
    from apps.npcs.updater import publish_many

    settings.BODYBROKER_INTENT_PUSH_GROUPS = 1  # both NPCs travel in the same group
    await watchman()
    await mourner()
    sockets = {}
    for protocol in (1, 2):
        ws = sockets[protocol] = await connect(make_key)
        await send(ws, type="hello", protocol=protocol)
        await receive(ws)
        for npc in ("pell", "mourner"):
            await send(ws, type="npc.subscribe", npc_id=npc)
            await receive(ws)
    now = time.time()
    await publish_many(
        [
            {
                "npc_id": npc,
                "intent": "idle",
                "args": {},
                "source": "model",
                "generated_at": now,
                "ttl_ms": 2000,
            }
            for npc in ("pell", "mourner", "someone-elses")
        ]
    )
    batch = await receive(sockets[2])
    assert (batch["type"], batch["ref"]) == ("intents", None)
    assert [item["npc_id"] for item in batch["intents"]] == ["pell", "mourner"]
    one, two = await receive(sockets[1]), await receive(sockets[1])
    assert [(one["type"], one["npc_id"]), (two["type"], two["npc_id"])] == [
        ("intent", "pell"),
        ("intent", "mourner"),
    ]
    # Pushed intents answer intent.get afterwards, from the socket's own copy.
    await send(sockets[2], type="intents.get", npc_ids=["mourner"], ref="g")
    answer = await receive(sockets[2])
    assert answer["intents"][0]["source"] == "cache"
    for ws in sockets.values():
        assert await ws.receive_nothing(timeout=0.1)  # nothing for the NPC nobody subscribed
        await ws.disconnect()


async def test_batches_need_a_protocol_2_hello(make_key: Callable[..., str]) -> None:
    await watchman()
    ws = await connect(make_key)
    await send(ws, type="intents.get", npc_ids=["pell"], ref="early")
    error = await receive(ws)
    assert (error["code"], error["ref"], error["field"]) == ("unknown_type", "early", "type")
    await send(ws, type="hello", protocol=1)
    assert (await receive(ws))["protocol"] == 1
    await send(ws, type="state.batch", states={"pell": STATE})
    assert (await receive(ws))["code"] == "unknown_type"
    await send(ws, type="hello", protocol=2)
    await receive(ws)
    await send(ws, type="intents.get", npc_ids=["pell"], ref="late")
    assert (await receive(ws))["type"] == "intents"
    await ws.disconnect()


async def test_with_every_engine_down_npcs_keep_getting_policy_intents(
    make_key: Callable[..., str], settings: Any
) -> None:
    dead_tiers(settings)
    await watchman()
    ws = await connect(make_key)
    await send(ws, type="npc.subscribe", npc_id="pell")
    await receive(ws)
    await send(ws, type="state.update", npc_id="pell", state=STATE)
    stop = asyncio.Event()
    loop = asyncio.create_task(IntentUpdater(tick_s=0.02).run(stop))
    try:
        pushed = await receive(ws, timeout=10)
    finally:
        stop.set()
        await loop
    assert pushed["type"] == "intent" and pushed["source"] in {"policy", "cache"}
    assert pushed["intent"] in {
        "idle",
        "patrol",
        "investigate",
        "approach_player",
        "attack",
        "follow",
        "talk",
    }
    queued = []  # whatever else arrived: more intents are fine, an error frame is not
    while not await ws.receive_nothing(timeout=0.1):
        queued.append(await receive(ws))
    assert [frame for frame in queued if frame["type"] == "error"] == []
    assert {frame["source"] for frame in queued} <= {"policy", "cache"}
    await ws.disconnect()


async def test_an_intent_expires_after_its_ttl(make_key: Callable[..., str], settings: Any) -> None:
    from apps.npcs.updater import publish

    settings.BODYBROKER_INTENT_TTL_MS = 200
    await watchman()
    ws = await connect(make_key)
    await send(ws, type="npc.subscribe", npc_id="pell")
    await receive(ws)
    await publish(
        {
            "npc_id": "pell",
            "intent": "attack",
            "args": {},
            "source": "model",
            "generated_at": 0.0,
            "ttl_ms": 200,
        }
    )
    assert (await receive(ws))["intent"] == "attack"  # pushed to the subscriber
    await send(ws, type="intent.get", npc_id="pell")
    assert (await receive(ws))["source"] == "cache"
    await asyncio.sleep(0.3)
    await send(ws, type="intent.get", npc_id="pell")
    assert (await receive(ws))["source"] == "policy"  # expired: the micro-policy answers
    await ws.disconnect()


async def test_dialogue_with_every_engine_down_ends_with_a_safety_line_and_is_stored(
    make_key: Callable[..., str], settings: Any
) -> None:
    dead_tiers(settings)
    await watchman()
    ws = await connect(make_key)
    await send(
        ws, type="dialogue.say", npc_id="pell", text="What climbs out of the harbour?", ref="d1"
    )
    frames = []
    while not frames or frames[-1]["type"] != "dialogue.done":
        frames.append(await receive(ws, timeout=15))
    done = frames[-1]
    assert done["source"] == "safety" and done["text"] == SAFETY
    assert done["ref"] == "d1"
    turns = await sync_to_async(
        lambda: list(DialogueTurn.objects.values_list("speaker", "source"))
    )()
    assert turns == [("player", ""), ("npc", "safety")]
    await ws.disconnect()


@pytest.mark.engine
async def test_subscribed_npcs_get_model_intents_and_dialogue_streams_tokens(
    make_key: Callable[..., str], engines: dict[str, str]
) -> None:
    await watchman()
    ws = await connect(make_key)
    await send(ws, type="npc.subscribe", npc_id="pell")
    allowed = (await receive(ws))["allowed_intents"]
    await send(ws, type="state.update", npc_id="pell", state=STATE)
    stop = asyncio.Event()
    loop = asyncio.create_task(IntentUpdater(tick_s=0.02).run(stop))
    deadline = time.monotonic() + 60
    try:
        # The first pushes may be the micro-policy's, sent at once while Gold is asked (or while
        # the router still holds an earlier test's slow Gold answers against it, for 10 s).
        pushed = await receive(ws, timeout=30)
        frame = 0
        while pushed["source"] != "model":
            assert pushed["source"] in {"policy", "cache"} and pushed["intent"] in allowed
            assert time.monotonic() < deadline, "no model intent within 60 s"
            # As a game does, keep sending the NPC's state: it stays watched (an NPC nobody
            # sent state for in 10 s is not refreshed) and, its state changed, is asked again.
            frame += 1
            await send(ws, type="state.update", npc_id="pell", state=dict(STATE, tick=frame))
            pushed = await receive(ws, timeout=30)
    finally:
        stop.set()
        await loop
    assert pushed["intent"] in allowed
    await send(ws, type="dialogue.say", npc_id="pell", text="Who goes there?")
    tokens = []
    frame = await receive(ws, timeout=30)
    while frame["type"] == "dialogue.token":
        tokens.append(frame["text"])
        frame = await receive(ws, timeout=30)
    assert frame["type"] == "dialogue.done" and frame["source"] == "model"
    assert len(tokens) > 1 and frame["text"] == "".join(tokens)
    await ws.disconnect()


async def test_a_flood_is_refused_then_closed(make_key: Callable[..., str], settings: Any) -> None:
    settings.BODYBROKER_WS_RATE_PER_S = 5
    ws = await connect(make_key)
    for _ in range(10):  # the burst (2 × rate) passes
        await send(ws, type="ping")
    for _ in range(10):
        await receive(ws)
    await send(ws, type="ping")
    assert (await receive(ws))["code"] == "rate_limited"
    for _ in range(250):
        await send(ws, type="ping")
    closed = await ws.receive_output(timeout=5)
    while closed["type"] != "websocket.close":
        closed = await ws.receive_output(timeout=5)
    assert closed["code"] == 1008


async def predict_then_say(
    make_key: Callable[..., str], settings: Any, said: str
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Pell's player comes close, the updater has Silver answer the likeliest line, then the
    player says ``said``: the prediction, the ``dialogue.done`` frame, and Silver's requests."""
    from tests.support.scripted_engine import ScriptedEngine, streamed

    async with ScriptedEngine(streamed("The gate stays shut tonight.")) as silver:
        settings.BODYBROKER_TIERS = {
            "gold": {"urls": [CLOSED], "model": "gold", "fallback_urls": []},
            "silver": {"urls": [silver.base_url], "model": "silver", "fallback_urls": []},
            "bronze": {"urls": [], "model": "bronze", "fallback_urls": []},
        }
        settings.BODYBROKER_ENGINE_TIMEOUTS = {"connect": 0.3, "first_token": 2, "total": 5}
        ws = await connect(make_key)
        await send(ws, type="npc.subscribe", npc_id="pell")
        await receive(ws)
        await send(ws, type="state.update", npc_id="pell", state=STATE)  # player 5 m away
        stop = asyncio.Event()
        loop = asyncio.create_task(IntentUpdater(tick_s=0.02).run(stop))
        try:
            for _ in range(250):
                predicted = await live_store().get_prediction("pell")
                if predicted is not None:
                    break
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await loop
        assert predicted is not None and len(silver.requests) == 1  # before anyone spoke
        await send(ws, type="dialogue.say", npc_id="pell", text=said)
        frame = await receive(ws)
        while frame["type"] != "dialogue.done":
            frame = await receive(ws)
        await ws.disconnect()
        return predicted, frame, len(silver.requests)


async def test_a_reply_predicted_before_the_player_speaks_is_sent_from_the_prediction(
    make_key: Callable[..., str], settings: Any
) -> None:
    from apps.npcs import prediction

    await watchman()
    before = prediction.hit_rate()
    predicted, done, asked = await predict_then_say(make_key, settings, "let me THROUGH")
    assert predicted["line"] == "Let me through."  # a guard's first likely line
    assert (done["source"], done["text"]) == ("prediction", "The gate stays shut tonight.")
    assert asked == 1  # answered without asking Silver again
    assert prediction.hit_rate() is not None and prediction.hit_rate() != before


async def test_what_players_keep_saying_first_to_an_npc_is_the_line_predicted(
    make_key: Callable[..., str], settings: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.npcs.models import Conversation

    await watchman()

    @sync_to_async
    def converse(minutes_ago: int, *lines: str) -> None:
        conversation = Conversation.objects.create(npc_slug="pell")
        Conversation.objects.filter(pk=conversation.pk).update(
            started_at=timezone.now() - timedelta(minutes=minutes_ago)
        )
        for line in lines:
            DialogueTurn.objects.create(conversation=conversation, speaker="player", text=line)
            DialogueTurn.objects.create(conversation=conversation, speaker="npc", text="Hm.")

    await converse(30, "Let me through.")
    await converse(20, "Have you seen my sister?", "Let me through.")
    await converse(10, "have you seen my sister")

    predicted, done, asked = await predict_then_say(make_key, settings, "Have you seen my SISTER?")
    assert predicted["line"] == "have you seen my sister"  # said first twice, newest spelling
    assert (done["source"], asked) == ("prediction", 1)


def test_the_player_is_only_predicted_to_talk_when_close_and_in_sight() -> None:
    from apps.npcs.prediction import about_to_talk, similarity, words
    from npc_runtime.policies import NpcState

    near = NpcState(npc_id="x", player_visible=True, player_x=3, player_y=0)
    far = NpcState(npc_id="x", player_visible=True, player_x=30, player_y=0)
    hidden = NpcState(npc_id="x", player_visible=False, player_x=1, player_y=0)
    assert about_to_talk(near) and not about_to_talk(far) and not about_to_talk(hidden)
    assert similarity(words("Who goes there?"), words("who goes THERE")) == 1.0
    assert similarity(words("Open the gate"), words("Who goes there?")) < 0.6


def test_opening_lines_players_repeat_come_before_the_micro_policys_own() -> None:
    from apps.npcs.prediction import learned_lines, likely_lines

    openings = [  # newest first
        "Who goes there?!",
        "Where is the key?",
        "where's the key",  # a different word ("where's"): a group of its own
        "Where is the key",
        "who goes there",
        "Once only.",
        "",
    ]
    learned = learned_lines(openings)
    assert learned == ("Who goes there?!", "Where is the key?")  # twice each; the newer first
    assert likely_lines("guard", learned) == (
        "Who goes there?!",
        "Where is the key?",
        "Let me through.",
        "What are you guarding?",  # the table's "Who goes there?" is already learned
    )
    assert likely_lines("guard") == ("Let me through.", "What are you guarding?", "Who goes there?")
    assert likely_lines("unknown-policy")[0] == "Are you all right?"  # a civilian's, by default
