"""NPC pages: the list, the create/edit form with inline errors, who may edit, and the Silver
playground playing an NPC."""

from __future__ import annotations

import html
from typing import Any
from uuid import uuid4

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from apps.npcs import personas
from apps.npcs.models import Npc
from tests.router.conftest import tiers

FORM = {
    "slug": "jory",
    "name": "Jory Hale",
    "role": "night watchman",
    "archetype": "guard",
    "allowed_intents": "idle\npatrol(route)\ninvestigate(x, y)",
    "default_intent": "patrol",
    "micro_policy": "guard",
    "intent_hz": "1.5",
    "intent_max_tokens": "6",
    "dialogue_max_tokens": "64",
    "safety_lines": "Move along.\nNot on my watch.",
    "knowledge_scope": ["constable-reeve"],
    "active": "on",
}


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_list_shows_every_npc_and_offers_editing_to_writers_only(
    alice: User, otto: User
) -> None:
    call_command("seed_npcs")
    writer_page = signed_in(alice).get("/npcs/")
    assert writer_page.status_code == 200
    text = writer_page.content.decode()
    for name in ("Mara Voss", "Jory Hale", "The Drowned Thing", "Silas Crane"):
        assert name in text
    assert 'href="/npcs/new"' in text and 'href="/npcs/mara-voss/edit"' in text
    assert '<option value="mara-voss">Mara Voss</option>' in text  # the playground's persona

    operator_page = signed_in(otto).get("/npcs/").content.decode()
    assert "Mara Voss" in operator_page and 'href="/npcs/new"' not in operator_page
    assert signed_in(otto).get("/npcs/new").status_code == 403
    assert signed_in(otto).post("/npcs/mara-voss/edit", {"name": "x"}).status_code == 403
    assert Npc.objects.get(slug="mara-voss").name == "Mara Voss"


@pytest.mark.django_db
def test_a_writer_creates_an_npc_from_the_form(alice: User) -> None:
    client = signed_in(alice)
    page = client.get("/npcs/new?archetype=stalker").content.decode()
    assert "investigate(x, y)" in page and 'value="stalker"' in page

    response = client.post("/npcs/new", FORM)
    assert response.status_code == 302 and response["Location"] == "/npcs/"
    npc = Npc.objects.get(slug="jory")
    assert npc.allowed_intents == [
        {"name": "idle", "args": []},
        {"name": "patrol", "args": ["route"]},
        {"name": "investigate", "args": ["x", "y"]},
    ]
    assert (npc.default_intent, npc.intent_hz, npc.intent_max_tokens) == ("patrol", 1.5, 6)
    assert npc.safety_lines == ["Move along.", "Not on my watch."]
    assert npc.knowledge_scope == ["constable-reeve"] and npc.active


@pytest.mark.django_db
def test_an_empty_intent_list_on_a_new_npc_takes_the_archetype_preset(alice: User) -> None:
    response = signed_in(alice).post(
        "/npcs/new", {**FORM, "allowed_intents": "", "default_intent": ""}
    )
    assert response.status_code == 302
    assert {"name": "attack", "args": []} in Npc.objects.get(slug="jory").allowed_intents


@pytest.mark.django_db
def test_bad_input_comes_back_inline_with_what_was_typed(alice: User) -> None:
    client = signed_in(alice)
    response = client.post(
        "/npcs/new",
        {**FORM, "safety_lines": "", "intent_hz": "3", "allowed_intents": "idle\npatrol(route"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert 'id="form-errors"' in text and 'role="alert"' in text
    assert "line 2" in text and "idle\npatrol(route</textarea>" in text
    assert not Npc.objects.exists()

    response = client.post("/npcs/new", {**FORM, "safety_lines": "", "intent_hz": "3"})
    text = response.content.decode()
    assert response.status_code == 400 and "<html" in text  # without htmx: the whole page
    assert "in-character refusal" in text and "from 0.5 to 2.0" in text
    assert 'value="Jory Hale"' in text
    assert not Npc.objects.exists()


@pytest.mark.django_db
def test_a_writer_edits_an_npc_and_htmx_is_sent_back_to_the_list(alice: User) -> None:
    call_command("seed_npcs")
    client = signed_in(alice)
    page = client.get("/npcs/gallowsgate-watchman/edit").content.decode()
    assert "patrol(route)" in page and "Not on my watch, and not out loud" in page
    response = client.post(
        "/npcs/gallowsgate-watchman/edit",
        {**FORM, "name": "Old Jory", "active": ""},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 204 and response["HX-Redirect"] == "/npcs/"
    npc = Npc.objects.get(slug="gallowsgate-watchman")
    assert npc.name == "Old Jory" and npc.active is False and npc.intent_hz == 1.5

    bad = client.post("/npcs/gallowsgate-watchman/edit", {**FORM, "default_intent": "fly"})
    assert bad.status_code == 400 and "not one of the allowed intents" in bad.content.decode()
    assert client.get("/npcs/nobody/edit").status_code == 404


@pytest.mark.django_db
def test_the_playground_plays_the_chosen_npc(alice: User, settings: Any) -> None:
    call_command("seed_npcs")
    personas.forget()
    settings.BODYBROKER_TIERS = tiers()  # no engine: Silver ends with the persona's lines
    client = signed_in(alice)
    response = client.post(
        "/npcs/ask",
        {"prompt": f"open the cold room {uuid4()}", "max_tokens": "16", "persona": "mara-voss"},
    )
    assert response.status_code == 200, response.content
    spoken = html.unescape(response.content.decode())
    assert any(line in spoken for line in Npc.objects.get(slug="mara-voss").safety_lines)
    assert "source template" in spoken

    unknown = client.post("/npcs/ask", {"prompt": "hi", "max_tokens": "16", "persona": "ghost"})
    assert unknown.status_code == 400 and "No active NPC" in unknown.content.decode()
