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

from apps.npcs import archetypes, personas
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
def test_the_list_shows_every_npc_and_offers_editing_to_npc_designers_only(
    alice: User, erin: User, otto: User
) -> None:
    call_command("seed_npcs")
    editor_page = signed_in(erin).get("/npcs/")
    assert editor_page.status_code == 200
    text = editor_page.content.decode()
    for name in ("Mara Voss", "Jory Hale", "The Drowned Thing", "Silas Crane"):
        assert name in text
    assert 'href="/npcs/new"' in text and 'href="/npcs/mara-voss/edit"' in text
    assert '<option value="mara-voss">Mara Voss</option>' in text  # the playground's persona

    for person in (otto, alice):  # an operator, and a writer (lore only)
        page = signed_in(person).get("/npcs/").content.decode()
        assert "Mara Voss" in page and 'href="/npcs/new"' not in page
        assert signed_in(person).get("/npcs/new").status_code == 403
        assert signed_in(person).post("/npcs/mara-voss/edit", {"name": "x"}).status_code == 403
        assert signed_in(person).post("/npcs/new", FORM).status_code == 403
    assert Npc.objects.get(slug="mara-voss").name == "Mara Voss"
    assert not Npc.objects.filter(slug="jory").exists()


@pytest.mark.django_db
def test_an_editor_creates_an_npc_from_the_form(erin: User) -> None:
    client = signed_in(erin)
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
def test_an_empty_intent_list_on_a_new_npc_takes_the_archetype_preset(erin: User) -> None:
    response = signed_in(erin).post(
        "/npcs/new", {**FORM, "allowed_intents": "", "default_intent": ""}
    )
    assert response.status_code == 302
    assert {"name": "attack", "args": []} in Npc.objects.get(slug="jory").allowed_intents


@pytest.mark.django_db
def test_bad_input_comes_back_inline_with_what_was_typed(erin: User) -> None:
    client = signed_in(erin)
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


def form_of(npc: Npc, **changes: Any) -> dict[str, Any]:
    """The edit form as the page fills it for ``npc``, with ``changes`` typed over it."""
    form: dict[str, Any] = {
        name: str(getattr(npc, name))
        for name in (
            "name",
            "role",
            "description",
            "motivation",
            "speaking_style",
            "archetype",
            "default_intent",
            "micro_policy",
            "intent_hz",
            "intent_max_tokens",
            "dialogue_max_tokens",
        )
    }
    form["allowed_intents"] = archetypes.format_intents(npc.allowed_intents)
    form["safety_lines"] = "\n".join(npc.safety_lines)
    form["knowledge_scope"] = list(npc.knowledge_scope)
    form["active"] = "on" if npc.active else ""
    form.update(changes)
    return form


@pytest.mark.django_db
def test_an_editor_retunes_an_npc_at_once_and_htmx_is_sent_back_to_the_list(erin: User) -> None:
    from apps.admin_ops.models import AuditEvent, ChangeRequest

    call_command("seed_npcs")
    client = signed_in(erin)
    page = client.get("/npcs/gallowsgate-watchman/edit").content.decode()
    assert "patrol(route)" in page and "Not on my watch, and not out loud" in page
    npc = Npc.objects.get(slug="gallowsgate-watchman")
    response = client.post(
        "/npcs/gallowsgate-watchman/edit",
        form_of(npc, intent_hz="0.5", dialogue_max_tokens="40"),
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 204 and response["HX-Redirect"] == "/npcs/"
    npc.refresh_from_db()
    assert (npc.intent_hz, npc.dialogue_max_tokens) == (0.5, 40)
    assert not ChangeRequest.objects.exists()
    event = AuditEvent.objects.get(action="npc.change", target="npc:gallowsgate-watchman")
    assert event.actor_label == "erin" and event.after == {
        "intent_hz": 0.5,
        "dialogue_max_tokens": 40,
    }


@pytest.mark.django_db
def test_an_editor_edit_of_who_an_npc_is_becomes_a_change_request(erin: User) -> None:
    from apps.admin_ops.models import ChangeRequest

    call_command("seed_npcs")
    client = signed_in(erin)
    edited = {**FORM, "name": "Old Jory", "active": ""}
    no_reason = client.post("/npcs/gallowsgate-watchman/edit", edited, HTTP_HX_REQUEST="true")
    assert no_reason.status_code == 400 and "say why" in no_reason.content.decode()
    assert not ChangeRequest.objects.exists()

    response = client.post(
        "/npcs/gallowsgate-watchman/edit",
        {**edited, "reason": "Jory retires this season."},
        HTTP_HX_REQUEST="true",
    )
    change_request = ChangeRequest.objects.get()
    assert response.status_code == 204
    assert response["HX-Redirect"] == f"/approvals/{change_request.id}/"
    assert change_request.kind == "npc.update" and change_request.status == "pending"
    assert change_request.target == "npc:gallowsgate-watchman"
    assert change_request.payload["name"] == "Old Jory"
    assert change_request.payload["active"] is False
    npc = Npc.objects.get(slug="gallowsgate-watchman")
    assert npc.name != "Old Jory" and npc.active is True  # nothing changes before approval
    assert client.get(f"/approvals/{change_request.id}/").status_code == 200  # the author's
    page = client.get("/npcs/gallowsgate-watchman/edit").content.decode()
    assert "waiting for approval" in page and f"/approvals/{change_request.id}/" in page

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
