"""The router's persona provider for NPCs: sync reads fill a short cache; async callers only read
it; the Silver chain's last link speaks the NPC's safety lines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from apps.npcs import personas, services
from apps.npcs.models import Npc
from apps.router import chains
from apps.router.contracts import InferenceRequest
from apps.router.personas import bundled, persona, with_persona_prefix
from tests.router.conftest import tiers

MARA: dict[str, Any] = {
    "name": "Mara Voss",
    "role": "night attendant at the Saltmarsh Morgue",
    "speaking_style": "quietly",
    "safety_lines": ["Hush. The drowned are listening.", "Some things stay in the cold room."],
}


@pytest.fixture(autouse=True)
def _cold_cache() -> Iterator[None]:
    personas.forget()
    yield
    personas.forget()


def ask(persona_key: str, text: str = "Who are you?") -> InferenceRequest:
    return InferenceRequest(
        messages=[{"role": "user", "content": text}], max_tokens=16, persona=persona_key
    )


@pytest.mark.django_db
def test_persona_with_an_npc_slug_plays_that_npc_from_sync_code() -> None:
    services.npc_create(slug="mara-voss", fields=MARA)
    found = persona("mara-voss")
    assert found.name == "Mara Voss"
    assert found.system.startswith("You are Mara Voss, night attendant")
    assert found.lines == tuple(MARA["safety_lines"])
    messages = with_persona_prefix(ask("mara-voss"))
    assert messages[0] == {"role": "system", "content": found.system}
    # bundled personas and unknown keys still answer as before
    assert persona("watchman") == bundled()["watchman"]
    assert persona("nobody-at-all") == bundled()["default"]


@pytest.mark.django_db
def test_lookups_are_cached_and_misses_too(django_assert_num_queries: Any) -> None:
    services.npc_create(slug="mara-voss", fields=MARA)
    with django_assert_num_queries(2):  # one per key, then none
        for _ in range(50):
            persona("mara-voss")
            persona("watchman")


@pytest.mark.django_db
def test_an_inactive_npc_falls_back_to_the_default_stranger() -> None:
    services.npc_create(slug="mara-voss", fields={**MARA, "active": False})
    assert persona("mara-voss") == bundled()["default"]


@pytest.mark.django_db
def test_an_edit_is_seen_at_once_here_and_after_the_ttl_elsewhere(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    services.npc_create(slug="mara-voss", fields=MARA)
    assert persona("mara-voss").name == "Mara Voss"
    with django_capture_on_commit_callbacks(execute=True):
        services.npc_update(slug="mara-voss", changes={"name": "Mara the Listener"})
    assert persona("mara-voss").name == "Mara the Listener"  # this process dropped its entry

    monkeypatch.setattr(personas, "TTL_S", 0.05)
    personas.forget()
    persona("mara-voss")
    Npc.objects.filter(slug="mara-voss").update(name="Edited Elsewhere")  # another process
    assert persona("mara-voss").name == "Mara the Listener"  # still cached
    time.sleep(0.06)
    assert persona("mara-voss").name == "Edited Elsewhere"


@pytest.mark.django_db
def test_async_callers_never_query_and_see_only_what_sync_code_cached(
    django_assert_num_queries: Any,
) -> None:
    services.npc_create(slug="mara-voss", fields=MARA)

    async def lookup() -> str:
        return persona("mara-voss").name

    with django_assert_num_queries(0):
        cold = asyncio.run(lookup())  # would raise SynchronousOnlyOperation if it queried
    assert cold == bundled()["default"].name
    assert personas.warm() == 1
    with django_assert_num_queries(0):
        assert asyncio.run(lookup()) == "Mara Voss"


@pytest.mark.django_db
def test_async_callers_keep_a_stale_entry_rather_than_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services.npc_create(slug="mara-voss", fields=MARA)
    monkeypatch.setattr(personas, "TTL_S", 0.01)
    personas.warm(["mara-voss", "ghost"])
    time.sleep(0.02)

    async def lookup(key: str) -> str:
        return persona(key).name

    assert asyncio.run(lookup("mara-voss")) == "Mara Voss"
    assert asyncio.run(lookup("ghost")) == bundled()["default"].name


@pytest.mark.django_db
def test_with_every_engine_down_silver_speaks_one_of_the_npcs_safety_lines(
    settings: Any,
) -> None:
    services.npc_create(slug="mara-voss", fields=MARA)
    personas.warm(["mara-voss"])
    settings.BODYBROKER_TIERS = tiers()  # no engine anywhere
    answer = asyncio.run(chains.answer(ask("mara-voss", f"open the door {uuid4()}")))
    assert answer.tier == "silver" and answer.source == "template"
    assert answer.text in MARA["safety_lines"]
