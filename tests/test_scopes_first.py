"""Every REST operation checks the caller's scope before it reads the body.

A caller without the scope an operation needs gets 403 whatever it sends — an invalid body, an
unknown field, malformed JSON — never a 400 that would tell it about fields it may not use. The
same request from a caller that holds every scope reaches validation (400), which shows the
request really was invalid. The table below must name every operation in the OpenAPI schema, so
a new door cannot be added without saying which scope it needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import User
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from apps.admin_ops import services as ops_services
from apps.admin_ops.actors import Actor
from apps.admin_ops.kinds import KINDS
from apps.npcs import api as npcs_api
from apps.npcs import services as npc_services
from apps.security.models import ApiKey
from apps.security.scopes import ADMIN, ALL_SCOPES, GAME, INFER, JOBS, LORE
from apps.security.services import api_key_create
from apps.story import services as story_services
from tests.conftest import bearer

pytestmark = pytest.mark.django_db

INVALID_BODY = {"no_such_field": 1}
LORE_SLUG = "the-warden"
NPC_SLUG = "warden"
MISSING = str(uuid.uuid4())


def lacking(*needed: str) -> tuple[str, ...]:
    """Every scope except those that would let the caller in."""
    return tuple(scope for scope in ALL_SCOPES if scope not in needed)


@dataclass(frozen=True)
class Door:
    """One operation: who lacks its scope, an invalid request, and what a caller holding every
    scope gets for that same request."""

    lacking: tuple[str, ...] | None  # None: a signed-in person with no role at all
    query: str = ""
    body: Any = field(default_factory=lambda: INVALID_BODY)
    with_every_scope: int = 400


REQUEST_SCOPES = {kind.request_scope for kind in KINDS.values()} | {ADMIN}


def doors(ids: dict[str, str]) -> dict[tuple[str, str], Door]:
    cr = ids["change_request"]
    return {
        ("get", "/api/v1/admin-reports/{report_id}/download"): Door(
            lacking(ADMIN), body=None, with_every_scope=404
        ),
        ("get", "/api/v1/audit/"): Door(lacking(ADMIN), query="?since=yesterday", body=None),
        ("get", "/api/v1/change-requests/"): Door(lacking(ADMIN), query="?status=nope", body=None),
        ("post", "/api/v1/change-requests/"): Door(lacking(*REQUEST_SCOPES)),
        # Any scope reads one's own requests: only a person with no role at all is refused.
        ("get", "/api/v1/change-requests/{change_request_id}"): Door(
            None, body=None, with_every_scope=200
        ),
        ("post", f"/api/v1/change-requests/{cr}/approve"): Door(lacking(ADMIN)),
        # Not the author and no decide scope: may neither reject nor revise this request.
        ("post", f"/api/v1/change-requests/{cr}/reject"): Door((INFER,)),
        ("post", f"/api/v1/change-requests/{cr}/revise"): Door((INFER,)),
        ("post", "/api/v1/infer"): Door(lacking(INFER)),
        ("get", "/api/v1/jobs/"): Door(lacking(JOBS), body=None, with_every_scope=200),
        ("get", "/api/v1/jobs/{job_id}"): Door(lacking(JOBS), body=None, with_every_scope=404),
        ("get", "/api/v1/lore/"): Door(lacking(LORE), query="?limit=0", body=None),
        ("post", "/api/v1/lore/"): Door(lacking(LORE)),
        ("get", "/api/v1/lore/search"): Door(lacking(LORE), query="?limit=0", body=None),
        ("post", "/api/v1/lore/storyteller/arc"): Door(lacking(LORE)),
        ("get", "/api/v1/lore/storyteller/{story_job_id}"): Door(
            lacking(LORE), body=None, with_every_scope=404
        ),
        # Takes no body: the job it names decides the answer.
        ("post", "/api/v1/lore/storyteller/{story_job_id}/cancel"): Door(
            lacking(LORE), body=None, with_every_scope=404
        ),
        ("get", "/api/v1/lore/{slug}"): Door(lacking(LORE), body=None, with_every_scope=200),
        ("put", f"/api/v1/lore/{LORE_SLUG}"): Door(lacking(LORE)),
        ("patch", f"/api/v1/lore/{LORE_SLUG}"): Door(lacking(LORE)),
        ("post", f"/api/v1/lore/{LORE_SLUG}/expand"): Door(lacking(LORE)),
        ("get", "/api/v1/lore/{slug}/history"): Door(
            lacking(LORE), body=None, with_every_scope=200
        ),
        ("post", f"/api/v1/lore/{LORE_SLUG}/publish"): Door(lacking(LORE)),
        ("post", f"/api/v1/lore/{LORE_SLUG}/restore"): Door(lacking(LORE)),
        ("get", "/api/v1/lore/{slug}/revisions/{number}"): Door(
            lacking(LORE), body=None, with_every_scope=200
        ),
        ("get", "/api/v1/npcs/"): Door(
            lacking(*npcs_api.READ_SCOPES), query="?no_such_filter=1", body=None
        ),
        ("post", "/api/v1/npcs/"): Door(lacking(*npcs_api.WRITE_SCOPES)),
        ("get", "/api/v1/npcs/{slug}"): Door(
            lacking(*npcs_api.READ_SCOPES), body=None, with_every_scope=200
        ),
        ("put", f"/api/v1/npcs/{NPC_SLUG}"): Door(lacking(*npcs_api.WRITE_SCOPES)),
        ("patch", f"/api/v1/npcs/{NPC_SLUG}"): Door(lacking(*npcs_api.WRITE_SCOPES)),
    }


def _fill(path: str, ids: dict[str, str]) -> str:
    values = {
        "report_id": MISSING,
        "change_request_id": ids["change_request"],
        "job_id": MISSING,
        "story_job_id": MISSING,
        "slug": NPC_SLUG if path.startswith("/api/v1/npcs/") else LORE_SLUG,
        "number": "1",
    }
    return path.format(**values)


@pytest.fixture
def world(adam: User) -> dict[str, str]:
    """A lore entry, an NPC and a change request another key asked for."""
    story_services.lore_entry_create(
        fields={"kind": "character", "title": "The Warden", "body": "Keeps the gate."},
        slug=LORE_SLUG,
        author=adam,
    )
    npc_services.npc_create(
        slug=NPC_SLUG, fields={"name": "The Warden", "safety_lines": ["Move along."]}
    )
    asker = ApiKey.objects.get(pk=api_key_create(name="asker", scopes=[GAME])[0].pk)
    change_request = ops_services.change_request_create(
        kind="game_state.write",
        target=f"npc:{NPC_SLUG}",
        payload={"set": {"mood": "wary"}},
        reason="The player lingers at the gate.",
        actor=Actor(key=asker),
        scopes=frozenset({GAME}),
    )
    return {"change_request": str(change_request.pk)}


def _send(api: APIClient, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    if body is None:
        return getattr(api, method)(url, **headers)
    return getattr(api, method)(url, body, format="json", **headers)


def test_the_table_names_every_operation_in_the_schema(world: dict[str, str]) -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {(method, path) for path, item in schema["paths"].items() for method in item}
    named = {(method, _template(path)) for method, path in doors(world)}
    assert named == operations


def _template(path: str) -> str:
    """Back from a filled path to the schema's template."""
    path = path.replace(LORE_SLUG, "{slug}").replace(NPC_SLUG, "{slug}")
    for part in path.split("/"):
        try:
            uuid.UUID(part)
        except ValueError:
            continue
        path = path.replace(part, "{change_request_id}")
    return path


@pytest.mark.parametrize("malformed", [False, True], ids=["invalid-body", "malformed-json"])
def test_a_caller_without_the_scope_gets_403_whatever_the_body(
    api: APIClient,
    make_key: Callable[..., str],
    world: dict[str, str],
    adam: User,
    malformed: bool,
) -> None:
    # An admin's own key: decisions are made by a person, the key's owner.
    every_scope = bearer(api_key_create(name="every scope", scopes=ALL_SCOPES, owner=adam)[1])
    nobody = User.objects.create_user(username="nobody", password="nobody-pw")
    refused: dict[str, int] = {}
    reached: dict[str, int] = {}
    for (method, path), door in doors(world).items():
        url = _fill(path, world) + door.query
        body = door.body
        if door.lacking is None:
            api.force_login(nobody)
            headers: dict[str, str] = {}
        else:
            api.logout()
            headers = bearer(make_key(*door.lacking, name=f"lacking {method} {path}"))
        if malformed and body is not None:
            response = getattr(api, method)(
                url, "{not json", content_type="application/json", **headers
            )
        else:
            response = _send(api, method, url, body, headers)
        if response.status_code != 403:
            refused[f"{method.upper()} {url}"] = response.status_code
        assert response.status_code != 403 or response.json()["error"]["type"] == (
            "permission_denied"
        )
        api.logout()
        if malformed and body is not None:
            response = getattr(api, method)(
                url, "{not json", content_type="application/json", **every_scope
            )
            expected = 400
        else:
            response = _send(api, method, url, body, every_scope)
            expected = door.with_every_scope
        if response.status_code != expected:
            reached[f"{method.upper()} {url}"] = response.status_code
    assert refused == {}, "these answered a caller without the scope with something else"
    assert reached == {}, "with every scope these did not answer as expected"


def test_an_async_ask_without_the_jobs_scope_is_403_before_its_body_is_validated(
    api: APIClient, make_key: Callable[..., str]
) -> None:
    body = {"sla": "async", "prompt": "Outline the siege.", "max_tokens": "many"}
    response = api.post("/api/v1/infer", body, format="json", **bearer(make_key(INFER)))
    assert response.status_code == 403
    assert "jobs" in response.json()["error"]["message"]
    response = api.post("/api/v1/infer", body, format="json", **bearer(make_key(INFER, JOBS)))
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"max_tokens"}
