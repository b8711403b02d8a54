"""The approvals queue, the detail page with its one-click decision, the audit page, and the
live-update websocket."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.admin_ops import services
from apps.admin_ops.actors import Actor
from apps.admin_ops.models import ChangeRequest
from apps.admin_ops.tasks import execute_change_request
from apps.npcs.services import game_state_apply
from apps.security.selectors import user_scopes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execute_change_request, "delay", lambda *a: None)


def open_request(author: User, target: str = "npc:warden", **extra: Any) -> ChangeRequest:
    fields: dict[str, Any] = {
        "kind": "game_state.write",
        "target": target,
        "payload": {"set": {"mood": "furious"}},
        "reason": "The player stole his lantern.",
    }
    fields.update(extra)
    return services.change_request_create(
        **fields, actor=Actor(user=author), scopes=user_scopes(author)
    )


def test_the_queue_counts_by_kind_and_lists_oldest_first(
    client: Client, otto: User, adam: User
) -> None:
    first = open_request(otto, "npc:warden")
    second = open_request(otto, "npc:priest")
    ChangeRequest.objects.filter(pk=second.pk).update(
        created_at=timezone.now() - timedelta(hours=1)
    )
    client.force_login(adam)
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/approvals/").content.decode()
    assert page.index(str(second.id)[:8]) < page.index(str(first.id)[:8])  # oldest first
    assert '<div class="kind-count" data-kind="game_state.write"><strong>2</strong>' in page
    assert '<div class="kind-count" data-kind="lore.publish"><strong>0</strong>' in page
    assert len(queries) <= 8


def test_the_queue_query_count_does_not_grow_with_the_queue(
    client: Client, otto: User, adam: User
) -> None:
    client.force_login(adam)
    open_request(otto, "npc:a")
    with CaptureQueriesContext(connection) as few:
        client.get("/approvals/?partial=queue")
    for name in "bcdefgh":
        open_request(otto, f"npc:{name}")
    with CaptureQueriesContext(connection) as many:
        client.get("/approvals/?partial=queue")
    assert len(many) == len(few)


def test_the_detail_page_shows_the_diff_and_why_the_author_cannot_approve(
    client: Client, adam: User
) -> None:
    change_request = open_request(adam)
    client.force_login(adam)
    page = client.get(f"/approvals/{change_request.id}/").content.decode()
    assert '<span class="add">+  &quot;mood&quot;: &quot;furious&quot;</span>' in page
    assert "You cannot approve this request" in page
    assert "you wrote this request; someone else must approve it" in page
    assert 'value="approve" disabled' in page


def test_the_detail_page_explains_expired_and_stale_requests(
    client: Client, otto: User, adam: User
) -> None:
    expired = open_request(otto, "npc:old")
    ChangeRequest.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(hours=1)
    )
    stale = open_request(otto, "npc:moved")
    game_state_apply(subject="npc:moved", changes={"set": {"room": "attic"}}, by="test")
    client.force_login(adam)
    assert "it expired at" in client.get(f"/approvals/{expired.id}/").content.decode()
    page = client.get(f"/approvals/{stale.id}/").content.decode()
    assert "stale revision: the target changed since this diff was made" in page


def test_one_click_approves_with_a_comment(client: Client, otto: User, adam: User) -> None:
    change_request = open_request(otto)
    client.force_login(adam)
    response = client.post(
        f"/approvals/{change_request.id}/decide", {"action": "approve", "comment": "Fair."}
    )
    assert response.status_code == 302
    change_request.refresh_from_db()
    assert change_request.status == "approved"
    assert change_request.decisions.get().comment == "Fair."
    page = client.get(response["Location"]).content.decode()
    assert "Approved: it is queued for a worker, which runs it." in page and "Fair." in page


def test_a_refused_decision_is_shown_on_the_page_with_a_4xx(
    client: Client, otto: User, alice: User
) -> None:
    change_request = open_request(otto)
    client.force_login(otto)
    response = client.post(f"/approvals/{change_request.id}/decide", {"action": "approve"})
    assert response.status_code == 403
    assert "you wrote this request" in response.content.decode()
    response = client.post(f"/approvals/{change_request.id}/decide", {"action": "reject"})
    assert response.status_code == 400 and "say why it is rejected" in response.content.decode()
    client.force_login(alice)
    assert client.get(f"/approvals/{change_request.id}/").status_code == 404


def test_the_audit_page_filters_and_exports_what_it_shows(
    client: Client, otto: User, adam: User
) -> None:
    open_request(otto, "npc:warden")
    client.force_login(adam)
    page = client.get("/audit/", {"action": "change_request."}).content.decode()
    assert "change_request.create" in page and "auth.login" not in page
    exported = client.get("/audit/", {"action": "change_request.", "export": "csv"})
    rows = list(csv.reader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert [row[5] for row in rows[1:]] == ["change_request.create"]
    assert 'href="/audit/?action=change_request.&amp;export=csv"' in page
    bad = client.get("/audit/", {"since": "last tuesday"})
    assert bad.status_code == 400 and "since" in bad.content.decode()
    client.force_login(otto)
    assert client.get("/audit/").status_code == 403


@pytest.mark.django_db(transaction=True)
async def test_admins_hear_about_requests_live(adam: User, otto: User) -> None:
    from asgiref.sync import sync_to_async

    from bodybroker.asgi import application

    communicator = WebsocketCommunicator(
        application, "/ws/approvals/", headers=[(b"origin", b"http://localhost")]
    )
    communicator.scope["user"] = adam  # what the session middleware would resolve
    connected, _ = await communicator.connect()
    assert connected
    change_request = await sync_to_async(open_request)(otto)
    frame = await communicator.receive_json_from(timeout=5)
    assert frame == {
        "type": "change_request",
        "event": "created",
        "id": str(change_request.id),
        "kind": "game_state.write",
        "status": "pending",
    }
    await communicator.send_to(text_data="hello")
    assert (await communicator.receive_json_from())["type"] == "error"
    await communicator.disconnect()


async def test_people_without_admin_cannot_listen(otto: User) -> None:
    from bodybroker.asgi import application

    communicator = WebsocketCommunicator(
        application, "/ws/approvals/", headers=[(b"origin", b"http://localhost")]
    )
    communicator.scope["user"] = otto
    connected, _ = await communicator.connect()
    assert not connected
