"""API keys in Django's admin: revoked, never deleted; scope and limit changes audited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from apps.admin_ops.models import AuditEvent
from apps.npcs import services as npc_services
from apps.security.models import ApiKey
from apps.security.scopes import UnknownScopeError
from apps.security.services import RevokedKeyError, api_key_change, api_key_create
from tests.conftest import bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(client: Client) -> User:
    """A superuser signed in to the admin (as `make run` seeds one)."""
    user = User.objects.create_superuser("root", password="root-pw")
    client.force_login(user)
    return user


def change_form(key: ApiKey, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "name": key.name,
        "scopes": list(key.scopes),
        "owner": key.owner_id or "",
        "requests_per_minute": key.requests_per_minute or "",
        "tokens_per_minute": key.tokens_per_minute or "",
        "daily_budget_usd": key.daily_budget_usd or "",
        "_save": "Save",
    }
    form.update(changes)
    return form


def test_keys_cannot_be_deleted_in_the_admin(client: Client, root: User) -> None:
    key, _ = api_key_create(name="ci", scopes=["jobs"])
    listing = client.get("/admin/security/apikey/")
    assert listing.status_code == 200 and b"delete_selected" not in listing.content
    assert b'value="revoke"' in listing.content
    client.post(
        "/admin/security/apikey/", {"action": "delete_selected", "_selected_action": [key.pk]}
    )
    assert client.get(f"/admin/security/apikey/{key.pk}/delete/").status_code == 403
    assert (
        client.post(f"/admin/security/apikey/{key.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).exists()
    page = client.get(f"/admin/security/apikey/{key.pk}/change/").content.decode()
    assert f"/admin/security/apikey/{key.pk}/delete/" not in page


def test_a_scope_change_in_the_admin_is_audited_and_takes_effect(
    client: Client, root: User, api: APIClient
) -> None:
    npc_services.npc_create(slug="jory", fields={"name": "Jory", "safety_lines": ["No."]})
    key, raw = api_key_create(name="writers' tool", scopes=["lore"])
    tune = {"intent_hz": 2}
    assert api.patch("/api/v1/npcs/jory", tune, format="json", **bearer(raw)).status_code == 403

    response = client.post(
        f"/admin/security/apikey/{key.pk}/change/",
        change_form(key, scopes=["lore", "npc"], requests_per_minute="30"),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    key.refresh_from_db()
    assert key.scopes == ["lore", "npc"] and key.requests_per_minute == 30
    event = AuditEvent.objects.get(action="api_key.change", target=f"api_key:{key.prefix}")
    assert event.actor_label == "root" and event.actor_type == "user"
    assert event.before == {"scopes": ["lore"], "requests_per_minute": None}
    assert event.after == {"scopes": ["lore", "npc"], "requests_per_minute": 30}
    assert api.patch("/api/v1/npcs/jory", tune, format="json", **bearer(raw)).status_code == 200

    unknown = client.post(
        f"/admin/security/apikey/{key.pk}/change/", change_form(key, scopes=["root"])
    )
    assert unknown.status_code == 200 and b"errorlist" in unknown.content
    key.refresh_from_db()
    assert key.scopes == ["lore", "npc"]
    assert AuditEvent.objects.filter(action="api_key.change").count() == 1


def test_a_revoked_key_stays_as_it_was_revoked(client: Client, root: User) -> None:
    key, _ = api_key_create(name="ci", scopes=["jobs"])
    client.post("/admin/security/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    refused = client.post(
        f"/admin/security/apikey/{key.pk}/change/", change_form(key, scopes=["jobs", "admin"])
    )
    assert refused.status_code == 403
    key.refresh_from_db()
    assert key.scopes == ["jobs"]
    with pytest.raises(RevokedKeyError):
        api_key_change(key_id=key.pk, changes={"scopes": ["admin"]})
    assert not AuditEvent.objects.filter(action="api_key.change").exists()


def test_the_change_service_validates_scopes_and_writes_nothing_when_nothing_changes(
    make_key: Callable[..., str],
) -> None:
    key, _ = api_key_create(name="ci", scopes=["jobs"])
    with pytest.raises(UnknownScopeError):
        api_key_change(key_id=key.pk, changes={"scopes": ["jobs", "everything"]})
    with pytest.raises(ValueError, match="not a setting"):
        api_key_change(key_id=key.pk, changes={"revoked_at": None})
    api_key_change(key_id=key.pk, changes={"scopes": ["jobs"], "name": " ci "})
    assert not AuditEvent.objects.filter(action="api_key.change").exists()


def test_create_api_key_accepts_the_npc_scope(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("create_api_key", "--name", "designer", "--scopes", "npc,lore")
    assert ApiKey.objects.get(name="designer").scopes == ["npc", "lore"]
    assert "npc" in capsys.readouterr().err
