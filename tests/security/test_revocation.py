"""Revoking an API key ends what it opened: its websockets are closed, in the admin too."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from apps.admin_ops.models import AuditEvent
from apps.security.models import ApiKey
from apps.security.scopes import ADMIN, GAME, JOBS
from apps.security.services import api_key_create, api_key_revoke
from bodybroker.asgi import application
from npc_runtime.protocol import KEY_REVOKED, KEY_REVOKED_CLOSE_CODE

pytestmark = pytest.mark.django_db(transaction=True)

# Each socket behind the API-key middleware, the scope it needs, and a frame it answers.
SOCKETS = [
    ("/ws/game/", GAME, {"type": "ping", "ref": "p"}, "pong"),
    ("/ws/jobs/", JOBS, {"type": "job.nothing"}, "error"),
    ("/ws/approvals/", ADMIN, {"type": "ping", "ref": "p"}, "pong"),
]


async def open_socket(path: str, raw: str) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(
        application, path, headers=[(b"authorization", f"Bearer {raw}".encode())]
    )
    connected, _ = await socket.connect()
    assert connected
    return socket


async def answers(socket: WebsocketCommunicator, frame: dict[str, Any], kind: str) -> bool:
    await socket.send_to(text_data=json.dumps(frame))
    return bool(json.loads(await socket.receive_from(timeout=5))["type"] == kind)


@pytest.mark.parametrize(("path", "scope", "frame", "answer"), SOCKETS)
async def test_revoking_a_key_closes_its_sockets_and_only_those(
    path: str, scope: str, frame: dict[str, Any], answer: str
) -> None:
    revoked, raw = await sync_to_async(api_key_create)(name="leaked", scopes=[scope])
    _, other_raw = await sync_to_async(api_key_create)(name="kept", scopes=[scope])
    first, second = await open_socket(path, raw), await open_socket(path, raw)
    bystander = await open_socket(path, other_raw)
    assert await answers(first, frame, answer)

    await sync_to_async(api_key_revoke)(key=revoked)

    for socket in (first, second):
        error = json.loads(await socket.receive_from(timeout=5))
        assert (error["type"], error["code"]) == ("error", KEY_REVOKED)
        closed = await socket.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": KEY_REVOKED_CLOSE_CODE}
    assert await answers(bystander, frame, answer)  # another key's socket lives on
    again = WebsocketCommunicator(
        application, path, headers=[(b"authorization", f"Bearer {raw}".encode())]
    )
    assert (await again.connect())[0] is False  # and the revoked key cannot come back
    await bystander.disconnect()


def test_the_admin_revokes_through_the_service_and_cannot_edit_the_timestamp(
    client: Client,
) -> None:
    root = User.objects.create_superuser("root", password="root-pw")  # as `make run` seeds one
    key, _ = api_key_create(name="ci", scopes=[JOBS])
    api_key_create(name="kept", scopes=[JOBS])
    client.force_login(root)
    change = client.get(f"/admin/security/apikey/{key.pk}/change/")
    assert change.status_code == 200 and b'name="revoked_at' not in change.content

    response = client.post(
        "/admin/security/apikey/",
        {"action": "revoke", "_selected_action": [key.pk]},
        follow=True,
    )
    assert response.status_code == 200 and b"Revoked 1 key" in response.content
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_key.revoke", target=f"api_key:{key.prefix}")
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 1  # "kept" was not touched
    assert client.get("/admin/security/apikey/add/").status_code == 403  # keys come from the CLI
