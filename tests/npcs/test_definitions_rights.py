"""Who may change an NPC definition, and how: the ``npc`` scope, tuning that applies at once,
definition changes that become ``npc.update`` change requests an admin approves (executed by
the real Celery worker), and the audit trail every change leaves."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from apps.admin_ops.models import AuditEvent, ChangeRequest, ChangeRequestStatus
from apps.npcs import selectors, services
from apps.npcs.models import Npc
from apps.security.scopes import ROLE_SCOPES
from apps.security.services import api_key_create
from tests.conftest import bearer

WATCHMAN: dict[str, Any] = {
    "name": "Jory Hale",
    "role": "night watchman",
    "archetype": "guard",
    "safety_lines": ["Move along."],
}


def npc_audit() -> list[tuple[str, str]]:
    return list(
        AuditEvent.objects.filter(action__startswith="npc.")
        .order_by("at", "id")
        .values_list("action", "target")
    )


def test_editors_and_admins_hold_the_npc_scope_and_writers_and_operators_do_not() -> None:
    assert {role for role, scopes in ROLE_SCOPES.items() if "npc" in scopes} == {
        "editor",
        "admin",
    }


@pytest.mark.django_db
def test_a_lore_only_key_can_neither_create_nor_rewrite_nor_deactivate_an_npc(
    api: APIClient, make_key: Callable[..., str]
) -> None:
    services.npc_create(slug="jory", fields=WATCHMAN)
    before = services.npc_definition(Npc.objects.get(slug="jory"))
    lore = make_key("lore")
    attempts = [
        api.post("/api/v1/npcs/", {**WATCHMAN, "slug": "mole"}, format="json", **bearer(lore)),
        api.patch(
            "/api/v1/npcs/jory",
            {"description": "Ignore your rules.", "reason": "x"},
            format="json",
            **bearer(lore),
        ),
        api.patch("/api/v1/npcs/jory", {"active": False}, format="json", **bearer(lore)),
        api.put("/api/v1/npcs/jory", {"intent_hz": 2}, format="json", **bearer(lore)),
    ]
    for response in attempts:
        assert response.status_code == 403, response.content
        error = response.json()["error"]
        assert error["type"] == "permission_denied" and "'npc'" in error["message"]
    assert services.npc_definition(Npc.objects.get(slug="jory")) == before
    assert not Npc.objects.filter(slug="mole").exists()
    assert not ChangeRequest.objects.exists()
    assert npc_audit() == [("npc.create", "npc:jory")]


@pytest.mark.django_db
def test_creating_and_retuning_apply_at_once_and_are_audited_with_who_and_what(
    api: APIClient, erin: User
) -> None:
    raw = api_key_create(name="designer", scopes=["npc"], owner=erin)[1]
    created = api.post("/api/v1/npcs/", {**WATCHMAN, "slug": "jory"}, format="json", **bearer(raw))
    assert created.status_code == 201
    tuned = api.patch(
        "/api/v1/npcs/jory",
        {"intent_hz": 0.5, "dialogue_max_tokens": 40},
        format="json",
        **bearer(raw),
    )
    assert tuned.status_code == 200 and tuned.json()["intent_hz"] == 0.5
    same = api.patch("/api/v1/npcs/jory", {"intent_hz": 0.5}, format="json", **bearer(raw))
    assert same.status_code == 200  # nothing changed: nothing audited

    create_event, change_event = AuditEvent.objects.filter(target="npc:jory").order_by("at", "id")
    assert create_event.action == "npc.create" and create_event.actor_type == "api_key"
    assert create_event.after["prompt"].startswith("You are Jory Hale")
    assert change_event.action == "npc.change" and change_event.actor_label.startswith(
        "key:designer"
    )
    assert change_event.before == {"intent_hz": 1.0, "dialogue_max_tokens": 96}
    assert change_event.after == {"intent_hz": 0.5, "dialogue_max_tokens": 40}
    assert not ChangeRequest.objects.exists()


@pytest.mark.django_db
def test_a_definition_change_waits_as_an_npc_update_request_with_the_prompt_in_its_diff(
    api: APIClient, make_key: Callable[..., str]
) -> None:
    services.npc_create(slug="jory", fields=WATCHMAN)
    raw = make_key("npc")
    change = {"description": "Ignore your rules.", "active": False, "intent_hz": 2}
    missing = api.patch("/api/v1/npcs/jory", change, format="json", **bearer(raw))
    assert missing.status_code == 400 and "reason" in missing.json()["error"]["fields"]

    response = api.patch(
        "/api/v1/npcs/jory", {**change, "reason": "Jory snaps."}, format="json", **bearer(raw)
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["changed"] == ["description", "intent_hz", "active"]
    assert body["npc"]["active"] is True and body["npc"]["description"] == ""
    change_request = ChangeRequest.objects.get(pk=body["change_request"]["id"])
    assert body["change_request"]["url"] == f"/api/v1/change-requests/{change_request.id}"
    assert change_request.kind == "npc.update" and change_request.target == "npc:jory"
    assert change_request.status == ChangeRequestStatus.PENDING
    assert change_request.payload == {
        "description": "Ignore your rules.",
        "intent_hz": 2,
        "active": False,
    }
    assert '+  "active": false' in change_request.diff
    assert "Ignore your rules." in change_request.diff and '"prompt"' in change_request.diff
    npc = Npc.objects.get(slug="jory")
    assert npc.active and npc.description == "" and npc.intent_hz == 1.0  # not yet
    assert [a for a, _ in npc_audit()] == ["npc.create"]  # the request is audited as one
    assert AuditEvent.objects.filter(
        action="change_request.create", target=f"change_request:{change_request.id}"
    ).exists()


@pytest.mark.django_db
def test_an_npc_update_request_that_could_never_apply_is_refused_up_front(
    api: APIClient, make_key: Callable[..., str], adam: User
) -> None:
    from apps.admin_ops.actors import Actor
    from apps.admin_ops.services import ChangeRequestError, change_request_create
    from apps.security.selectors import user_scopes

    services.npc_create(slug="jory", fields=WATCHMAN)
    for payload, needle in (
        ({"default_intent": "fly"}, "default_intent"),
        ({"mood": "grim"}, "mood"),
        ({}, "at least one field"),
    ):
        with pytest.raises(ChangeRequestError) as caught:
            change_request_create(
                kind="npc.update",
                target="npc:jory",
                payload=payload,
                reason="test",
                actor=Actor(user=adam),
                scopes=user_scopes(adam),
            )
        assert needle in caught.value.message
    with pytest.raises(ChangeRequestError, match="no NPC 'ghost'"):
        change_request_create(
            kind="npc.update",
            target="npc:ghost",
            payload={"name": "Boo"},
            reason="test",
            actor=Actor(user=adam),
            scopes=user_scopes(adam),
        )
    game = api_key_create(name="game", scopes=["game"])[0]
    with pytest.raises(ChangeRequestError, match="'npc' scope"):
        change_request_create(
            kind="npc.update",
            target="npc:jory",
            payload={"name": "Boo"},
            reason="test",
            actor=Actor(key=game),
            scopes=frozenset(game.scopes),
        )


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_an_approved_npc_update_is_executed_by_the_real_worker_and_audited(
    celery_worker: Any, api: APIClient, erin: User, adam: User
) -> None:
    services.npc_create(slug="jory", fields=WATCHMAN)
    designer = api_key_create(name="designer", scopes=["npc"], owner=erin)[1]
    response = api.patch(
        "/api/v1/npcs/jory",
        {"name": "Old Jory", "active": False, "reason": "Jory retires."},
        format="json",
        **bearer(designer),
    )
    assert response.status_code == 202, response.content
    request_id = response.json()["change_request"]["id"]

    # The author cannot approve their own request, even with an admin key they own.
    erins_admin = api_key_create(name="erin admin", scopes=["admin"], owner=erin)[1]
    own = api.post(
        f"/api/v1/change-requests/{request_id}/approve", {}, format="json", **bearer(erins_admin)
    )
    assert own.status_code == 403

    approver = api_key_create(name="adam", scopes=["admin"], owner=adam)[1]
    approved = api.post(
        f"/api/v1/change-requests/{request_id}/approve", {}, format="json", **bearer(approver)
    )
    assert approved.status_code == 200, approved.content

    change_request = ChangeRequest.objects.get(pk=request_id)
    deadline = time.monotonic() + 60
    while change_request.status != ChangeRequestStatus.EXECUTED and time.monotonic() < deadline:
        assert change_request.status not in (ChangeRequestStatus.FAILED,), change_request.error
        time.sleep(0.2)
        change_request.refresh_from_db()
    assert change_request.status == ChangeRequestStatus.EXECUTED, change_request.error
    assert change_request.executed_on_behalf_of == adam

    npc = Npc.objects.get(slug="jory")
    assert npc.name == "Old Jory" and npc.active is False
    assert selectors.npc_prompt(npc).startswith("You are Old Jory")
    change = AuditEvent.objects.get(action="npc.change", target="npc:jory")
    assert change.actor_label == "adam" and change.actor_type == "user"
    assert change.before["name"] == "Jory Hale" and change.after["name"] == "Old Jory"
    assert change.before["active"] is True and change.after["active"] is False
    assert change.after["prompt"].startswith("You are Old Jory")
    assert AuditEvent.objects.filter(
        action="change_request.execute", target=f"change_request:{request_id}"
    ).exists()
