"""The intent updater under load: Gold slots are capped, every NPC still gets an intent each
interval, model turns go to the NPCs that waited longest, unchanged states are not re-asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.npcs import intents
from apps.npcs.live import live_store
from apps.npcs.services import npc_create
from apps.npcs.updater import IntentUpdater
from tests.support.scripted_engine import ScriptedEngine, completion

pytestmark = pytest.mark.django_db(transaction=True)
NPCS = [f"guard-{i}" for i in range(5)]
QUIET = {"pos": [0, 0], "fear": 0.1, "player": {"pos": [30, 30], "visible": False}}


@pytest.fixture
async def slow_gold(settings: Any) -> AsyncIterator[ScriptedEngine]:
    """A Gold engine that takes 0.3 s to answer "talk"; no other tier answers."""
    await live_store().clear()
    intents.forget_briefs()
    for slug in NPCS:
        await sync_to_async(npc_create)(
            slug=slug,
            fields={
                "name": slug,
                "archetype": "guard",
                "micro_policy": "guard",
                "safety_lines": ["Move along."],
            },
        )
    async with ScriptedEngine(completion('"talk"', delay_s=0.3)) as gold:
        settings.BODYBROKER_TIERS = {
            "gold": {"urls": [gold.base_url], "model": "gold", "fallback_urls": []},
            "silver": {"urls": [], "model": "silver", "fallback_urls": []},
            "bronze": {"urls": [], "model": "bronze", "fallback_urls": []},
        }
        yield gold
    await live_store().clear()


async def move_all(fear: float) -> None:
    await live_store().put_states({slug: dict(QUIET, fear=fear) for slug in NPCS})


async def published() -> dict[str, dict[str, Any]]:
    store = live_store()
    found = {slug: await store.get_intent(slug) for slug in NPCS}
    return {slug: intent for slug, intent in found.items() if intent is not None}


async def settle(updater: IntentUpdater) -> None:
    await asyncio.gather(*updater.in_flight.values())


def due_now(updater: IntentUpdater) -> None:
    updater.ask_due.clear()
    updater.publish_due.clear()


async def test_past_the_gold_slots_every_npc_gets_an_intent_at_once(
    slow_gold: ScriptedEngine,
) -> None:
    updater = IntentUpdater(model_slots=1)
    await move_all(0.1)
    assert await updater.tick() == 1 + len(NPCS)  # one ask started, five intents published
    assert len(updater.in_flight) == 1  # one Gold ask, not five queued
    (asked,) = updater.in_flight
    now = await published()  # every NPC has an intent at once, the one being asked too
    assert set(now) == set(NPCS)
    assert {intent["source"] for intent in now.values()} == {"policy"}
    await settle(updater)
    answer = (await published())[asked]
    assert (answer["intent"], answer["source"]) == ("talk", "model")
    assert len(slow_gold.requests) == 1


async def test_model_turns_go_to_the_npcs_that_waited_longest(slow_gold: ScriptedEngine) -> None:
    updater = IntentUpdater(model_slots=1)
    asked: list[str] = []
    for round_ in range(len(NPCS)):
        await move_all(round_ / 10)
        due_now(updater)
        await updater.tick()
        asked.extend(updater.in_flight)
        await settle(updater)
    assert sorted(asked) == sorted(NPCS)  # each NPC once before any is asked twice
    assert {intent["source"] for intent in (await published()).values()} <= {"model", "cache"}


async def test_an_unchanged_state_is_not_asked_again(slow_gold: ScriptedEngine) -> None:
    updater = IntentUpdater(model_slots=len(NPCS))
    await move_all(0.1)
    await updater.tick()
    await settle(updater)
    assert len(slow_gold.requests) == len(NPCS)
    due_now(updater)
    assert await updater.tick() == len(NPCS)
    assert not updater.in_flight and len(slow_gold.requests) == len(NPCS)
    again = await published()
    assert {(i["intent"], i["source"]) for i in again.values()} == {("talk", "cache")}


async def test_a_recent_model_intent_is_reused_when_no_slot_is_free(
    slow_gold: ScriptedEngine,
) -> None:
    updater = IntentUpdater(model_slots=1)
    await move_all(0.1)
    await updater.tick()
    (first,) = updater.in_flight
    await settle(updater)
    await move_all(0.2)  # every state changed; the one slot goes to an NPC never asked
    due_now(updater)
    await updater.tick()
    assert first not in updater.in_flight
    reused = (await published())[first]
    assert (reused["intent"], reused["source"]) == ("talk", "cache")
    await settle(updater)


async def test_with_gold_down_intents_come_from_the_policy_at_the_npcs_rate(
    settings: Any,
) -> None:
    await live_store().clear()
    intents.forget_briefs()
    await sync_to_async(npc_create)(
        slug="lone",
        fields={"name": "Lone", "archetype": "guard", "intent_hz": 2.0, "safety_lines": ["No."]},
    )
    settings.BODYBROKER_TIERS = {
        tier: {"urls": ["http://127.0.0.1:9"], "model": tier, "fallback_urls": []}
        for tier in ("gold", "silver", "bronze")
    }
    settings.BODYBROKER_ENGINE_TIMEOUTS = {"connect": 0.3, "first_token": 1, "total": 2}
    updater = IntentUpdater()
    stop = asyncio.Event()
    store = live_store()
    await store.put_states({"lone": QUIET})
    seen: list[float] = []
    loop = asyncio.create_task(updater.run(stop))
    try:
        for tick in range(60):  # 1.2 s, the state changing every 20 ms
            await store.put_states({"lone": dict(QUIET, fear=(tick % 10) / 10)})
            intent = await store.get_intent("lone")
            if intent is not None and (not seen or intent["generated_at"] != seen[-1]):
                assert intent["source"] == "policy"
                seen.append(intent["generated_at"])
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await loop
    # 2 Hz over 1.2 s: three intents, not one per state change
    assert 2 <= len(seen) <= 4
    await store.clear()


def guard_brief(slug: str = "pell", persona: str = "You are Old Pell.") -> intents.NpcBrief:
    """A guard's brief, as the updater reads it from its definition."""
    from apps.npcs.archetypes import archetype_intents
    from npc_runtime.policies import allowed_names

    raw = tuple(archetype_intents("guard"))
    return intents.NpcBrief(
        slug=slug,
        policy="guard",
        allowed=tuple(sorted(allowed_names(raw))),
        allowed_raw=raw,
        default_intent="idle",
        prompt=persona,
        hz=1.0,
        max_tokens=8,
    )


def test_the_model_may_only_choose_intents_the_state_can_carry_out() -> None:
    from apps.npcs.intents import intent_request
    from npc_runtime.policies import Intent, NpcState

    brief = guard_brief()

    def offered(state: NpcState) -> list[str]:
        request = intent_request(brief, state, Intent("idle", {}))
        assert request.response_format is not None
        return list(request.response_format["json_schema"]["schema"]["enum"])

    alone = NpcState(npc_id="pell")  # no player in sight, no route, nothing heard
    assert sorted(offered(alone)) == ["idle", "talk"]
    seen = NpcState(npc_id="pell", player_visible=True, player_x=3, player_y=4)
    assert {"attack", "approach_player", "follow", "investigate"} <= set(offered(seen))
    walking = NpcState(npc_id="pell", route=[(0, 0), (5, 0)])
    assert "patrol" in offered(walking) and "attack" not in offered(walking)


def test_every_npcs_intent_request_begins_with_the_same_instruction() -> None:
    """A one-slot CPU engine reuses what the previous request began with: the instruction all
    NPCs share comes first, each NPC's persona after it (bench/gold_prompt.py)."""
    from apps.npcs.intents import INTENT_INSTRUCTION, intent_request
    from npc_runtime.policies import Intent, NpcState

    def system_prompt(slug: str, persona: str) -> str:
        brief = guard_brief(slug, persona)
        request = intent_request(brief, NpcState(npc_id=slug), Intent("idle", {}))
        return str(request.messages[0]["content"])

    pell = system_prompt("pell", "You are Old Pell, night watchman.")
    mara = system_prompt("mara", "You are Mara, a ferrywoman.")
    assert pell.startswith(INTENT_INSTRUCTION) and mara.startswith(INTENT_INSTRUCTION)
    assert pell.endswith("You are Old Pell, night watchman.")
    assert mara.endswith("You are Mara, a ferrywoman.")
