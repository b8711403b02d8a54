"""The admins' API keys page: a key minted from a form (scopes as checkboxes, limits, owner),
shown once; its settings changed and the key revoked through the audited services."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from apps.admin_ops.models import AuditEvent
from apps.security.models import ApiKey
from apps.security.services import api_key_create
from tests.conftest import bearer

pytestmark = pytest.mark.django_db


def key_form(**changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "name": "night-shift bot",
        "scopes": ["jobs", "lore"],
        "owner": "",
        "requests_per_minute": "",
        "tokens_per_minute": "",
        "daily_budget_usd": "",
    }
    form.update(changes)
    return form


def test_an_admin_creates_a_key_with_scopes_limits_and_owner_and_sees_it_once(
    client: Client, adam: User, api: APIClient
) -> None:
    client.force_login(adam)
    form_page = client.get("/keys/").content.decode()
    assert form_page.count('type="checkbox" name="scopes"') == 6
    response = client.post(
        "/keys/",
        key_form(owner=str(adam.pk), requests_per_minute="30", daily_budget_usd="2.5"),
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    raw = re.search(r'<code class="raw-key" id="raw-key">([^<]+)</code>', response.content.decode())
    assert raw, "the new key is not on the page"
    key = ApiKey.objects.get(name="night-shift bot")
    assert key.scopes == ["jobs", "lore"] and key.owner == adam
    assert (key.requests_per_minute, key.tokens_per_minute, key.daily_budget_usd) == (30, None, 2.5)
    assert raw.group(1).startswith(f"bb_{key.prefix}_")
    assert api.get("/api/v1/jobs/", **bearer(raw.group(1))).status_code == 200

    event = AuditEvent.objects.get(action="api_key.create", target=f"api_key:{key.prefix}")
    assert event.actor_label == "adam" and event.after["requests_per_minute"] == 30
    assert raw.group(1) not in str(event.after)
    listing = client.get("/keys/").content.decode()
    assert raw.group(1) not in listing  # shown once, never again
    row = re.search(rf'<tr data-prefix="{key.prefix}">(.*?)</tr>', listing, re.S)
    assert row and "jobs, lore" in row.group(1) and "30 req/min" in row.group(1)
    assert "$2.50/day" in row.group(1) and "adam" in row.group(1)


def test_a_key_form_with_no_scope_or_a_negative_limit_is_refused_inline(
    client: Client, adam: User
) -> None:
    client.force_login(adam)
    no_scope = client.post("/keys/", key_form(scopes=[]))
    assert no_scope.status_code == 400 and "Choose at least one scope." in no_scope.content.decode()
    negative = client.post("/keys/", key_form(requests_per_minute="-1", scopes=["root"]))
    page = negative.content.decode()
    assert negative.status_code == 400 and "greater than or equal to 0" in page
    assert "root is not one of the available choices" in page
    assert 'value="night-shift bot"' in page  # what was typed comes back
    assert not ApiKey.objects.exists() and 'id="raw-key"' not in page


def test_an_admin_changes_scopes_and_limits_and_the_change_is_audited(
    client: Client, adam: User, api: APIClient
) -> None:
    key, raw = api_key_create(name="writers' tool", scopes=["lore"])
    assert api.get("/api/v1/jobs/", **bearer(raw)).status_code == 403
    client.force_login(adam)
    page = client.get(f"/keys/{key.pk}/").content.decode()
    assert 'type="checkbox" name="scopes" value="lore"' in page and "checked" in page
    response = client.post(
        f"/keys/{key.pk}/",
        key_form(name="writers' tool", scopes=["lore", "jobs"], tokens_per_minute="5000"),
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.scopes == ["lore", "jobs"] and key.tokens_per_minute == 5000
    event = AuditEvent.objects.get(action="api_key.change")
    assert event.before == {"scopes": ["lore"], "tokens_per_minute": None}
    assert event.after == {"scopes": ["lore", "jobs"], "tokens_per_minute": 5000}
    assert event.actor_label == "adam"
    assert api.get("/api/v1/jobs/", **bearer(raw)).status_code == 200
    assert (
        "Saved: scopes, tokens_per_minute changed."
        in client.get(response["Location"]).content.decode()
    )


def test_a_revoked_key_stops_working_and_changes_no_more(
    client: Client, adam: User, api: APIClient
) -> None:
    key, raw = api_key_create(name="leaked", scopes=["jobs"])
    client.force_login(adam)
    assert client.post(f"/keys/{key.pk}/revoke").status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_key.revoke").count() == 1
    assert api.get("/api/v1/jobs/", **bearer(raw)).status_code == 401
    refused = client.post(f"/keys/{key.pk}/", key_form(name="leaked", scopes=["admin"]))
    assert refused.status_code == 409 and "revoked" in refused.content.decode()
    key.refresh_from_db()
    assert key.scopes == ["jobs"]
    page = client.get(f"/keys/{key.pk}/").content.decode()
    assert 'id="key-settings"' not in page and 'id="revoke-key"' not in page


def test_only_admins_see_or_make_keys(client: Client, erin: User, otto: User) -> None:
    key, _ = api_key_create(name="ci", scopes=["jobs"])
    for person in (erin, otto):
        client.force_login(person)
        assert client.get("/keys/").status_code == 403
        assert client.post("/keys/", key_form()).status_code == 403
        assert client.post(f"/keys/{key.pk}/revoke").status_code == 403
    assert ApiKey.objects.count() == 1 and ApiKey.objects.get().revoked_at is None


def test_djangos_admin_shows_scopes_as_checkboxes_and_names(client: Client) -> None:
    root = User.objects.create_superuser("root", password="root-pw")
    client.force_login(root)
    key, _ = api_key_create(name="ci", scopes=["jobs", "lore"])
    change = client.get(f"/admin/security/apikey/{key.pk}/change/").content.decode()
    assert change.count('type="checkbox" name="scopes"') == 6
    assert '<textarea name="scopes"' not in change
    listing = client.get("/admin/security/apikey/").content.decode()
    assert "jobs, lore" in listing and "[&#x27;jobs&#x27;" not in listing
