"""NPC definitions: validation of personas, intent vocabularies, tier settings; the prompt; the
seed command."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.npcs import archetypes, selectors, services
from apps.npcs.models import Npc

MARA: dict[str, Any] = {
    "name": "Mara Voss",
    "role": "night attendant at the Saltmarsh Morgue",
    "description": "Keeps the lamps lit from dusk to dawn.",
    "motivation": "protect the drowned",
    "speaking_style": "quietly",
    "safety_lines": ["Hush. Not that."],
}


def invalid(slug: str = "mara-voss", **fields: Any) -> dict[str, list[str]]:
    with pytest.raises(services.NpcValidationError) as caught:
        services.npc_create(slug=slug, fields={**MARA, **fields})
    return caught.value.fields


@pytest.mark.django_db
def test_a_new_npc_takes_its_archetypes_intents_policy_and_idle_default() -> None:
    npc = services.npc_create(slug="jory", fields={**MARA, "archetype": "guard"})
    npc.refresh_from_db()
    assert npc.allowed_intents == archetypes.archetype_intents("guard")
    assert {"name": "investigate", "args": ["x", "y"]} in npc.allowed_intents
    assert npc.micro_policy == "guard" and npc.default_intent == "idle"
    assert (npc.intent_hz, npc.intent_max_tokens, npc.dialogue_max_tokens) == (1.0, 8, 96)
    assert npc.active is True


@pytest.mark.django_db
def test_the_default_intent_is_the_first_when_the_vocabulary_has_no_idle() -> None:
    npc = services.npc_create(
        slug="hunter", fields={**MARA, "allowed_intents": [{"name": "hide"}, {"name": "flee"}]}
    )
    assert npc.default_intent == "hide"
    assert npc.allowed_intents == [{"name": "hide", "args": []}, {"name": "flee", "args": []}]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("intents", "needle"),
    [
        ([], "non-empty"),
        ("idle", "non-empty"),
        ([{"name": "Patrol Route"}], "not a lower-case slug"),
        ([{"name": "idle"}, {"name": "idle"}], "twice"),
        ([{"name": "patrol", "args": ["route-1"]}], "identifiers"),
        ([{"name": "go", "args": ["x", "x"]}], "distinct"),
        ([{"name": "go", "args": "x"}], "identifiers"),
        ([{"name": "go", "speed": 3}], "'name' and optional 'args' only"),
        (["idle"], "an object"),
    ],
)
def test_bad_intent_vocabularies_are_refused_naming_the_field(intents: Any, needle: str) -> None:
    errors = invalid(allowed_intents=intents)
    assert list(errors) == ["allowed_intents"]
    assert needle in " ".join(errors["allowed_intents"])
    assert not Npc.objects.exists()


@pytest.mark.django_db
def test_a_default_intent_outside_the_vocabulary_is_refused() -> None:
    errors = invalid(allowed_intents=[{"name": "idle"}], default_intent="attack")
    assert errors == {"default_intent": ["'attack' is not one of the allowed intents"]}


@pytest.mark.django_db
@pytest.mark.parametrize("lines", [[], ["   "], "Hush", [3]])
def test_an_npc_needs_at_least_one_safety_line(lines: Any) -> None:
    assert "safety_lines" in invalid(safety_lines=lines)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "hz", [0.4, 2.01, 0, True, "1", float("nan"), float("inf"), pytest.param(10**400, id="10**400")]
)
def test_intent_rates_outside_half_to_two_hertz_are_refused(hz: Any) -> None:
    assert list(invalid(intent_hz=hz)) == ["intent_hz"]


@pytest.mark.django_db
def test_token_budgets_policy_and_slugs_are_checked_all_at_once() -> None:
    errors = invalid(
        slug="Mara Voss",
        name="",
        intent_max_tokens=9,
        dialogue_max_tokens=0,
        micro_policy="wanderer",
        knowledge_scope=["Mara Voss"],
        archetype="Big Guard",
        allowed_intents=[{"name": "idle"}],
        active="yes",
    )
    assert set(errors) == {
        "slug",
        "name",
        "intent_max_tokens",
        "dialogue_max_tokens",
        "micro_policy",
        "knowledge_scope",
        "archetype",
        "active",
    }


@pytest.mark.django_db
def test_unknown_fields_reserved_and_taken_slugs_are_refused() -> None:
    assert invalid(mood="grim") == {"mood": ["unknown field"]}
    assert "reserved" in invalid(slug="new")["slug"][0]
    services.npc_create(slug="mara-voss", fields=MARA)
    assert "exists already" in invalid()["slug"][0]
    assert Npc.objects.count() == 1


@pytest.mark.django_db
def test_an_update_validates_the_whole_npc_and_keeps_it_on_error() -> None:
    services.npc_create(slug="mara-voss", fields=MARA)
    with pytest.raises(services.NpcValidationError) as caught:
        services.npc_update(slug="mara-voss", changes={"default_intent": "attack"})
    assert list(caught.value.fields) == ["default_intent"]
    npc = services.npc_update(
        slug="mara-voss", changes={"intent_hz": 2, "knowledge_scope": ["mara-voss", "mara-voss"]}
    )
    npc.refresh_from_db()
    assert npc.intent_hz == 2.0 and npc.knowledge_scope == ["mara-voss"]
    assert npc.default_intent == "idle"
    with pytest.raises(services.NpcNotFoundError):
        services.npc_update(slug="nobody", changes={"name": "x"})


@pytest.mark.django_db
def test_the_persona_prompt_is_compact_and_in_character() -> None:
    npc = services.npc_create(
        slug="mara-voss", fields={**MARA, "description": "She listens at the drains. " * 60}
    )
    prompt = selectors.npc_prompt(npc)
    assert prompt.startswith("You are Mara Voss, night attendant at the Saltmarsh Morgue.")
    assert "You want: protect the drowned." in prompt and "You speak quietly." in prompt
    assert prompt.endswith("never mention being an AI.")
    assert len(prompt) < 600  # the description was 1,600 characters: it is cut for Gold


def test_the_editor_notation_round_trips_intents() -> None:
    intents = archetypes.archetype_intents("guard")
    assert archetypes.parse_intents(archetypes.format_intents(intents)) == intents
    assert archetypes.parse_intents("idle\n\n investigate( x , y )\n") == [
        {"name": "idle", "args": []},
        {"name": "investigate", "args": ["x", "y"]},
    ]
    with pytest.raises(ValueError, match="line 2"):
        archetypes.parse_intents("idle\npatrol(route")


@pytest.mark.django_db
def test_seed_npcs_is_idempotent_and_lines_up_with_the_lore_characters() -> None:
    call_command("seed_npcs")
    first = {n.slug: (n.pk, n.updated_at) for n in Npc.objects.all()}
    assert {"mara-voss", "silas-crane", "gallowsgate-watchman", "drowned-thing"} <= set(first)
    Npc.objects.filter(slug="mara-voss").update(name="Someone Else")
    call_command("seed_npcs")
    assert Npc.objects.count() == len(first)
    assert {n.slug: n.pk for n in Npc.objects.all()} == {k: v[0] for k, v in first.items()}
    assert Npc.objects.get(slug="mara-voss").name == "Mara Voss"
    assert Npc.objects.get(slug="drowned-thing").micro_policy == "stalker"
    assert Npc.objects.get(slug="gallowsgate-watchman").default_intent == "patrol"
    assert Npc.objects.get(slug="mara-voss").knowledge_scope == ["mara-voss"]


@pytest.mark.django_db
def test_listing_npcs_costs_one_query() -> None:
    call_command("seed_npcs")
    with CaptureQueriesContext(connection) as queries:
        names = [npc.name for npc in selectors.npcs_list(active=True)]
    assert len(queries) == 1 and "Mara Voss" in names
