"""What an admin reviews on a change request: a lore body's diff line by line, a request that
changes nothing refused (and never approvable), the executor's result in words, and an approved
request that says it waits for a worker."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from django.utils.timezone import now
from rest_framework.test import APIClient

from apps.admin_ops import services
from apps.admin_ops.actors import Actor
from apps.admin_ops.models import ChangeRequest, WorkerHeartbeat
from apps.admin_ops.tasks import execute_change_request
from apps.npcs.services import game_state_apply
from apps.security.scopes import GAME
from apps.security.selectors import user_scopes
from tests.admin_ops.support import lore_edit_asked_to_publish
from tests.conftest import bearer

pytestmark = pytest.mark.django_db

BODY = (
    "The tide came in at night.\n"
    "\n"
    "Nobody in the village of Saltmarsh remembers who first heard the bell under the water, "
    "but everyone remembers the morning the fishing boats came back empty.\n"
    "The warden keeps the lantern lit."
)


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execute_change_request, "delay", lambda *a: None)


def ask(author: User, payload: dict[str, object], target: str = "npc:warden") -> ChangeRequest:
    return services.change_request_create(
        kind="game_state.write",
        target=target,
        payload=payload,
        reason="The player stole his lantern.",
        actor=Actor(user=author),
        scopes=user_scopes(author),
    )


def test_a_lore_publish_diff_shows_the_body_line_by_line(
    client: Client, alice: User, erin: User, adam: User
) -> None:
    change_request = lore_edit_asked_to_publish(writer=alice, editor=erin, body=BODY)
    diff = change_request.diff.splitlines()
    assert "-    The warden keeps the lantern lit." in diff
    assert "+    The warden let the lantern go out." in diff
    # The unchanged paragraph is context on its own line, not part of one long changed line.
    assert not any(line.startswith(("-", "+")) and "Saltmarsh" in line for line in diff)
    client.force_login(adam)
    page = client.get(f"/approvals/{change_request.id}/").content.decode()
    assert '<span class="del">-    The warden keeps the lantern lit.</span>' in page


def test_a_request_that_changes_nothing_is_refused_in_the_api_shape(
    api: APIClient, make_key: Callable[..., str]
) -> None:
    game_state_apply(subject="npc:warden", changes={"set": {"mood": "furious"}}, by="test")
    response = api.post(
        "/api/v1/change-requests/",
        {
            "kind": "game_state.write",
            "target": "npc:warden",
            "payload": {"set": {"mood": "furious"}},
            "reason": "Make him furious.",
        },
        format="json",
        **bearer(make_key(GAME)),
    )
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["type"] == "conflict" and "changes nothing" in error["message"]
    assert "payload" in error["fields"]
    assert not ChangeRequest.objects.exists()


def test_a_request_that_came_to_change_nothing_cannot_be_approved(
    client: Client, otto: User, adam: User
) -> None:
    change_request = ask(otto, {"set": {"mood": "furious"}})
    game_state_apply(subject="npc:warden", changes={"set": {"mood": "furious"}}, by="test")
    client.force_login(adam)
    client.post(f"/approvals/{change_request.id}/decide", {"action": "refresh"})
    change_request.refresh_from_db()
    assert services.changes_nothing(change_request)
    response = client.post(f"/approvals/{change_request.id}/decide", {"action": "approve"})
    assert response.status_code == 409
    page = response.content.decode()
    assert "it changes nothing" in page and 'id="no-change"' in page
    assert 'value="approve" disabled' in page
    change_request.refresh_from_db()
    assert change_request.status == "pending" and not change_request.decisions.exists()


def test_an_approved_request_says_it_waits_for_a_worker_and_whether_one_is_there(
    client: Client, otto: User, adam: User
) -> None:
    change_request = ask(otto, {"set": {"mood": "calm"}})
    client.force_login(adam)
    client.post(f"/approvals/{change_request.id}/decide", {"action": "approve"})
    page = client.get(f"/approvals/{change_request.id}/").content.decode()
    assert 'id="cr-status">approved — queued for a worker</span>' in page
    assert "No worker has reported in lately" in page
    queue = client.get("/approvals/").content.decode()
    assert "approved — queued for a worker" in queue and 'id="no-worker"' in queue

    # What a live worker writes every few seconds (worker_heartbeat_record, which also
    # recycles the database connection and so cannot run inside a test's transaction).
    WorkerHeartbeat.objects.create(hostname="celery@test", queues=["default"], last_seen=now())
    page = client.get(f"/approvals/{change_request.id}/").content.decode()
    assert 'id="worker-wait"' in page and "No worker has reported in lately" not in page
    assert 'id="no-worker"' not in client.get("/approvals/").content.decode()


def test_the_result_of_an_executed_request_reads_as_a_table(
    client: Client, otto: User, adam: User
) -> None:
    change_request = ask(otto, {"set": {"mood": "calm", "room": "crypt"}})
    services.change_request_approve(
        change_request_id=change_request.id, user=adam, scopes=user_scopes(adam)
    )
    executed = services.change_request_execute(change_request_id=change_request.id)
    assert executed is not None and executed.status == "executed", executed and executed.error
    assert isinstance(executed.result, dict) and executed.result
    client.force_login(adam)
    page = client.get(f"/approvals/{change_request.id}/").content.decode()
    assert '<table id="cr-result"' in page
    assert "{&#x27;" not in page and "{'" not in page  # no Python dict repr
    for key in executed.result:
        assert f'<th scope="row">{key.replace("_", " ")}</th>' in page


@pytest.mark.django_db(transaction=True)
async def test_the_pages_hear_when_a_worker_claims_and_finishes_a_request(
    adam: User, otto: User
) -> None:
    from asgiref.sync import sync_to_async

    from bodybroker.asgi import application

    change_request = await sync_to_async(ask)(otto, {"set": {"mood": "calm"}})
    scopes = await sync_to_async(user_scopes)(adam)
    await sync_to_async(services.change_request_approve)(
        change_request_id=change_request.id, user=adam, scopes=scopes
    )
    communicator = WebsocketCommunicator(
        application, "/ws/approvals/", headers=[(b"origin", b"http://localhost")]
    )
    communicator.scope["user"] = adam
    connected, _ = await communicator.connect()
    assert connected
    await sync_to_async(services.change_request_execute)(change_request_id=change_request.id)
    events = [(await communicator.receive_json_from(timeout=5))["event"] for _ in range(2)]
    assert events == ["executing", "executed"]
    await communicator.disconnect()
