"""API keys: created hashed with scopes, shown once, revocable; scopes gate each door."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.security.models import ApiKey
from apps.security.selectors import api_key_authenticate
from apps.security.services import api_key_create, api_key_revoke
from tests.conftest import bearer

pytestmark = pytest.mark.django_db


def test_only_a_digest_of_the_key_is_stored() -> None:
    key, raw = api_key_create(name="game server", scopes="game,infer")
    stored = ApiKey.objects.get(pk=key.pk)
    assert raw.startswith(f"bb_{stored.prefix}_")
    assert raw not in {stored.digest, stored.prefix}
    assert stored.scopes == ["game", "infer"]
    assert api_key_authenticate(raw) == stored


def test_a_tampered_or_revoked_key_does_not_authenticate() -> None:
    key, raw = api_key_create(name="tool", scopes=["infer"])
    assert api_key_authenticate(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    assert api_key_authenticate("not-a-key") is None
    api_key_revoke(key=key)
    assert api_key_authenticate(raw) is None


def test_unknown_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        api_key_create(name="x", scopes="infer,root")


def test_create_api_key_command_prints_the_key_once(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("create_api_key", "--name", "ci bot", "--scopes", "infer,jobs")
    out = capsys.readouterr()
    raw = out.out.strip()
    key = api_key_authenticate(raw)
    assert key is not None and key.name == "ci bot" and key.scopes == ["infer", "jobs"]
    assert "shown once" in out.err


def test_create_api_key_command_rejects_unknown_scopes() -> None:
    with pytest.raises(CommandError, match="unknown scope 'everything'"):
        call_command("create_api_key", "--name", "x", "--scopes", "everything")


def test_anonymous_api_calls_get_401_with_a_json_error(api: APIClient) -> None:
    response = api.post("/api/v1/infer", {"prompt": "hi"}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_required"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_key_gets_401(api: APIClient) -> None:
    response = api.get("/api/v1/jobs/", **bearer("bb_nope_nope"))
    assert response.status_code == 401


def test_a_key_without_the_scope_gets_403(api: APIClient, make_key: Callable[..., str]) -> None:
    game_only = make_key("game")
    response = api.post("/api/v1/infer", {"prompt": "hi"}, format="json", **bearer(game_only))
    assert response.status_code == 403
    assert "'infer' scope" in response.json()["error"]["message"]
    assert api.get("/api/v1/jobs/", **bearer(game_only)).status_code == 403


def test_revoking_a_key_locks_it_out_at_once(api: APIClient) -> None:
    key, raw = api_key_create(name="leaked", scopes="jobs")
    assert api.get("/api/v1/jobs/", **bearer(raw)).status_code == 200
    api_key_revoke(key=key)
    assert api.get("/api/v1/jobs/", **bearer(raw)).status_code == 401


def test_a_session_gets_the_scopes_of_its_role(api: APIClient, alice: object, otto: object) -> None:
    api.login(username="alice", password="alice-pw")  # writer: lore, infer — no jobs
    assert api.get("/api/v1/jobs/").status_code == 403
    api.login(username="otto", password="otto-pw")  # operator: jobs
    assert api.get("/api/v1/jobs/").status_code == 200
