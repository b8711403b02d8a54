"""REST: /api/v1/change-requests/ (list, create, read, approve, reject, revise) and the
read-only /api/v1/audit/ with its CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.admin_ops.models import AuditEvent, ChangeRequest, ChangeRequestStatus
from apps.admin_ops.tasks import execute_change_request
from apps.security.scopes import ADMIN, GAME, LORE
from apps.security.services import api_key_create
from tests.conftest import bearer

pytestmark = pytest.mark.django_db
BASE = "/api/v1/change-requests/"
WRITE = {
    "kind": "game_state.write",
    "target": "npc:warden",
    "payload": {"set": {"mood": "furious"}},
    "reason": "The player stole his lantern.",
}


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record execution tasks instead of sending them: these tests execute them inline."""
    sent: list[str] = []
    monkeypatch.setattr(execute_change_request, "delay", sent.append)
    return sent


def create(api: APIClient, raw: str, **overrides: Any) -> Any:
    return api.post(BASE, {**WRITE, **overrides}, format="json", **bearer(raw))


def test_a_game_key_opens_a_request_and_sees_its_diff(
    api: APIClient, make_key: Callable[..., str]
) -> None:
    response = create(api, make_key(GAME))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending" and body["required_approvals"] == 1
    assert '+  "mood": "furious"' in body["diff"]
    assert body["author"].startswith("key:test key")
    detail = api.get(f"{BASE}{body['id']}", **bearer(make_key(ADMIN)))
    assert detail.status_code == 200 and detail.json()["payload"] == WRITE["payload"]


def test_unknown_fields_and_wrong_types_are_named(
    api: APIClient, make_key: Callable[..., str]
) -> None:
    raw = make_key(GAME)
    response = create(api, raw, colour="red", reason=7)
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"colour"}
    response = create(api, raw, reason=7)
    assert response.status_code == 400 and "reason" in response.json()["error"]["fields"]
    response = create(api, raw, target="warden")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "target": ["a 'game_state.write' target looks like npc:<name> or world:<name>"]
    }
    response = create(api, raw, kind="lore.burn")
    assert response.status_code == 400 and "kind" in response.json()["error"]["fields"]


def test_an_operator_cannot_publish_lore(api: APIClient, otto: User) -> None:
    api.force_login(otto)
    response = api.post(
        BASE,
        {"kind": "lore.publish", "target": "lore:crypt", "payload": {"revision": 2}, "reason": "x"},
        format="json",
    )
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "requesting 'lore.publish' needs the 'lore' scope"
    assert not ChangeRequest.objects.exists()


def test_a_writer_cannot_approve(api: APIClient, alice: User, otto: User) -> None:
    api.force_login(otto)
    change_request_id = api.post(BASE, WRITE, format="json").json()["id"]
    api.force_login(alice)
    response = api.post(f"{BASE}{change_request_id}/approve", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_denied"
    assert ChangeRequest.objects.get().status == "pending"


def test_approval_by_an_admin_executes_on_their_behalf(
    api: APIClient, otto: User, adam: User, no_broker: list[str]
) -> None:
    api.force_login(otto)
    change_request_id = api.post(BASE, WRITE, format="json").json()["id"]
    api.force_login(adam)
    with pytest.MonkeyPatch.context():
        response = api.post(
            f"{BASE}{change_request_id}/approve", {"comment": "He deserves it."}, format="json"
        )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "approved"
    assert response.json()["decisions"][0] == {
        "decision": "approve",
        "user": "adam",
        "comment": "He deserves it.",
        "revision": response.json()["revision"],
        "created_at": response.json()["decisions"][0]["created_at"],
        "counts": True,
    }
    execute_change_request(change_request_id)
    body = api.get(f"{BASE}{change_request_id}").json()
    assert body["status"] == "executed" and body["executed_on_behalf_of"] == "adam"
    assert body["result"]["state"] == {"mood": "furious"}


def test_the_author_is_told_why_they_cannot_approve(api: APIClient, adam: User) -> None:
    api.force_login(adam)
    change_request_id = api.post(BASE, WRITE, format="json").json()["id"]
    detail = api.get(f"{BASE}{change_request_id}").json()
    assert detail["approval_blockers"] == ["you wrote this request; someone else must approve it"]
    response = api.post(f"{BASE}{change_request_id}/approve", {}, format="json")
    assert response.status_code == 403
    assert "you wrote this request" in response.json()["error"]["message"]


def test_a_key_without_an_owner_cannot_decide(
    api: APIClient, otto: User, make_key: Callable[..., str]
) -> None:
    api.force_login(otto)
    change_request_id = api.post(BASE, WRITE, format="json").json()["id"]
    api.logout()
    response = api.post(
        f"{BASE}{change_request_id}/approve", {}, format="json", **bearer(make_key(ADMIN))
    )
    assert response.status_code == 403
    assert "decisions are made by a person" in response.json()["error"]["message"]


def test_an_admins_own_key_decides_as_them(api: APIClient, otto: User, adam: User) -> None:
    _, raw = api_key_create(name="adam's console", scopes=[ADMIN], owner=adam)
    api.force_login(otto)
    change_request_id = api.post(BASE, WRITE, format="json").json()["id"]
    api.logout()
    response = api.post(f"{BASE}{change_request_id}/approve", {}, format="json", **bearer(raw))
    assert response.status_code == 200
    assert response.json()["decisions"][0]["user"] == "adam"


def test_stale_and_expired_requests_answer_409(api: APIClient, otto: User, adam: User) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.npcs.services import game_state_apply

    api.force_login(otto)
    stale_id = api.post(BASE, WRITE, format="json").json()["id"]
    expired_id = api.post(BASE, {**WRITE, "target": "npc:priest"}, format="json").json()["id"]
    game_state_apply(subject="npc:warden", changes={"set": {"mood": "asleep"}}, by="test")
    ChangeRequest.objects.filter(pk=expired_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    api.force_login(adam)
    stale = api.post(f"{BASE}{stale_id}/approve", {}, format="json")
    assert stale.status_code == 409 and "stale revision" in stale.json()["error"]["message"]
    expired = api.post(f"{BASE}{expired_id}/approve", {}, format="json")
    assert expired.status_code == 409 and "expired" in expired.json()["error"]["message"]
    revised = api.post(f"{BASE}{stale_id}/revise", {}, format="json")
    assert revised.status_code == 200 and revised.json()["approval_blockers"] == []


def test_rejecting_needs_a_comment(api: APIClient, otto: User, adam: User) -> None:
    api.force_login(otto)
    change_request_id = api.post(BASE, WRITE, format="json").json()["id"]
    api.force_login(adam)
    response = api.post(f"{BASE}{change_request_id}/reject", {}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"comment": ["say why it is rejected"]}
    response = api.post(f"{BASE}{change_request_id}/reject", {"comment": "No."}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "rejected"


def test_listing_needs_admin_and_filters_by_status(
    api: APIClient, make_key: Callable[..., str], otto: User
) -> None:
    api.force_login(otto)
    for npc in ("warden", "priest", "child"):
        api.post(BASE, {**WRITE, "target": f"npc:{npc}"}, format="json")
    assert api.get(BASE).status_code == 403
    api.logout()
    admin = make_key(ADMIN)
    ChangeRequest.objects.filter(target="npc:child").update(status=ChangeRequestStatus.REJECTED)
    with CaptureQueriesContext(connection) as queries:
        response = api.get(BASE, {"status": "pending"}, **bearer(admin))
    assert response.status_code == 200
    assert [r["target"] for r in response.json()] == ["npc:warden", "npc:priest"]
    assert len(queries) <= 3  # the key, its last-use stamp, one query for the page
    bad = api.get(BASE, {"status": "sleeping"}, **bearer(admin))
    assert bad.status_code == 400 and "status" in bad.json()["error"]["fields"]


def test_others_cannot_read_a_request_they_did_not_write(
    api: APIClient, make_key: Callable[..., str]
) -> None:
    change_request_id = create(api, make_key(GAME)).json()["id"]
    other = api.get(f"{BASE}{change_request_id}", **bearer(make_key(LORE)))
    assert other.status_code == 404


def test_the_audit_api_is_read_only_filterable_and_exports_csv(
    api: APIClient, make_key: Callable[..., str], otto: User
) -> None:
    api.force_login(otto)
    api.post(BASE, WRITE, format="json")
    api.logout()
    admin = make_key(ADMIN)
    events = api.get("/api/v1/audit/", {"action": "change_request."}, **bearer(admin)).json()
    assert [e["action"] for e in events] == ["change_request.create"]
    assert events[0]["actor_label"] == "otto" and events[0]["request_id"]
    for method in ("post", "put", "patch", "delete"):
        assert getattr(api, method)("/api/v1/audit/", **bearer(admin)).status_code == 405
    exported = api.get("/api/v1/audit/", {"export": "csv"}, **bearer(admin))
    assert exported["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert rows[0][:6] == ["id", "at", "actor_type", "actor_label", "actor_tier", "action"]
    assert {row[5] for row in rows[1:]} >= {"change_request.create", "api_key.create"}
    bad = api.get("/api/v1/audit/", {"since": "yesterday", "colour": "red"}, **bearer(admin))
    assert bad.status_code == 400
    assert set(bad.json()["error"]["fields"]) == {"colour"}
    assert api.get("/api/v1/audit/", **bearer(make_key(GAME))).status_code == 403


def test_audit_events_cannot_be_changed_even_by_sql(make_key: Callable[..., str]) -> None:
    make_key(ADMIN)
    event = AuditEvent.objects.get(action="api_key.create")
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="nothing")
    with pytest.raises(PermissionError):
        event.delete()
    event.summary = "edited"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE admin_ops_auditevent SET action = %s WHERE id = %s", ["x", event.pk]
            )
    assert AuditEvent.objects.get(pk=event.pk).action == "api_key.create"


def test_an_approver_who_then_rejects_the_same_revision_is_told_409(
    api: APIClient, otto: User, adam: User
) -> None:
    api.force_login(otto)
    change_request_id = api.post(BASE, WRITE, format="json").json()["id"]
    api.force_login(adam)
    assert api.post(f"{BASE}{change_request_id}/approve", {}, format="json").status_code == 200
    response = api.post(
        f"{BASE}{change_request_id}/reject", {"comment": "On second thought."}, format="json"
    )
    assert response.status_code == 409
    assert "already approved revision" in response.json()["error"]["message"]
    api.force_login(otto)
    withdrawn = api.post(
        f"{BASE}{change_request_id}/reject", {"comment": "Never mind."}, format="json"
    )
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "rejected"
