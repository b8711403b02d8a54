"""The lore REST API: the lore scope, revisions and conflicts, history, search, bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from apps.story import services
from apps.story.models import LoreEntry, LoreRevision
from tests.conftest import bearer
from tests.story.conftest import write

CHARACTER = {
    "kind": "character",
    "title": "Mara Voss",
    "summary": "Night attendant.",
    "body": "Keeps the lamps at the [[saltmarsh-morgue]].",
    "tags": ["Morgue", "witness"],
}


@pytest.fixture
def key(make_key: Callable[..., str]) -> str:
    return make_key("lore")


def test_create_read_update_and_history_keep_every_revision(api: APIClient, key: str) -> None:
    created = api.post(
        "/api/v1/lore/", {**CHARACTER, "message": "first"}, format="json", **bearer(key)
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["slug"] == "mara-voss" and body["revision"] == 1 and body["status"] == "draft"
    assert body["tags"] == ["morgue", "witness"]
    assert body["links"] == [
        {"slug": "saltmarsh-morgue", "label": "saltmarsh-morgue", "exists": False}
    ]
    assert body["warnings"] == ["broken link [[saltmarsh-morgue]] on line 1: no such entry yet"]

    updated = api.patch(
        "/api/v1/lore/mara-voss",
        {"base_revision": 1, "summary": "Talks to the drowned.", "message": "why"},
        format="json",
        **bearer(key),
    )
    assert updated.status_code == 200, updated.content
    assert updated.json()["revision"] == 2 and updated.json()["body"] == CHARACTER["body"]

    history = api.get("/api/v1/lore/mara-voss/history", **bearer(key)).json()
    assert [(r["revision"], r["message"]) for r in history["revisions"]] == [
        (2, "why"),
        (1, "first"),
    ]
    first = api.get("/api/v1/lore/mara-voss/revisions/1", **bearer(key)).json()
    assert first["summary"] == "Night attendant."


def test_a_stale_update_is_a_409_showing_both_versions_and_nothing_is_lost(
    api: APIClient, key: str, alice: User
) -> None:
    write(alice, "ward", body="Black water.")
    services.lore_entry_update(slug="ward", base_revision=1, changes={"body": "Erin's text."})

    response = api.patch(
        "/api/v1/lore/ward", {"base_revision": 1, "body": "My text."}, format="json", **bearer(key)
    )

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["type"] == "conflict"
    assert error["fields"] == {"base_revision": ["the entry is at revision 2"]}
    assert error["current"]["body"] == "Erin's text." and error["current"]["revision"] == 2
    assert error["yours"] == {"body": "My text."}
    assert LoreEntry.objects.get(slug="ward").body == "Erin's text."


def test_restore_over_the_api_is_a_new_revision(api: APIClient, key: str, alice: User) -> None:
    write(alice, "ward", body="one")
    services.lore_entry_update(slug="ward", base_revision=1, changes={"body": "two"})
    response = api.post(
        "/api/v1/lore/ward/restore",
        {"revision": 1, "base_revision": 2},
        format="json",
        **bearer(key),
    )
    assert response.status_code == 200 and response.json()["body"] == "one"
    assert response.json()["revision"] == 3


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**CHARACTER, "colour": "red"}, "colour"),
        ({**CHARACTER, "spoiler_level": "2"}, "spoiler_level"),
        ({**CHARACTER, "spoiler_level": 9}, "spoiler_level"),
        ({**CHARACTER, "kind": "vampire"}, "kind"),
        ({**CHARACTER, "tags": "morgue"}, "tags"),
        ({**CHARACTER, "body": "see [[broken"}, "body"),
        ({**CHARACTER, "knowledge_scope": ["nobody"]}, "knowledge_scope"),
        ({**CHARACTER, "title": ""}, "title"),
        ({**CHARACTER, "slug": "Not A Slug"}, "slug"),
        ({**CHARACTER, "slug": "search"}, "slug"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(
    api: APIClient, key: str, payload: dict[str, Any], field: str
) -> None:
    response = api.post("/api/v1/lore/", payload, format="json", **bearer(key))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request" and field in error["fields"]
    assert LoreEntry.objects.count() == 0


def test_an_oversized_body_is_refused_naming_the_body(
    api: APIClient, key: str, settings: Any
) -> None:
    settings.BODYBROKER_LORE_MAX_BODY_CHARS = 1000
    response = api.post(
        "/api/v1/lore/", {**CHARACTER, "body": "x" * 1001}, format="json", **bearer(key)
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["body"] == ["is 1001 characters; the limit is 1000"]


def test_a_request_bigger_than_the_upload_limit_is_a_json_413(
    api: APIClient, key: str, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    response = api.post(
        "/api/v1/lore/", {**CHARACTER, "body": "x" * 5000}, format="json", **bearer(key)
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert LoreEntry.objects.count() == 0


def test_the_lore_scope_is_required(api: APIClient, make_key: Callable[..., str]) -> None:
    assert api.get("/api/v1/lore/").status_code == 401
    response = api.get("/api/v1/lore/", **bearer(make_key("infer", "jobs")))
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "this action needs the 'lore' scope"


def test_listing_filters_and_pages_in_a_fixed_number_of_queries(
    api: APIClient, key: str, alice: User, django_assert_max_num_queries: Any
) -> None:
    for i in range(12):
        write(
            alice,
            f"bone-{i}",
            kind="item" if i % 2 else "rule",
            tags=["bones"],
            body=f"Bone number {i}.",
        )
    write(alice, "salt", kind="rule", body="Sea salt.", tags=["ward"])

    with django_assert_max_num_queries(3):
        page = api.get("/api/v1/lore/?kind=item&tag=bones&limit=4", **bearer(key)).json()
    assert len(page["results"]) == 4 and page["next_offset"] == 4
    assert {e["kind"] for e in page["results"]} == {"item"}

    found = api.get("/api/v1/lore/?q=sea+salt", **bearer(key)).json()["results"]
    assert [e["slug"] for e in found] == ["salt"]

    bad = api.get("/api/v1/lore/?kind=vampire&limit=0", **bearer(key))
    assert bad.status_code == 400 and set(bad.json()["error"]["fields"]) == {"kind", "limit"}


def test_publishing_is_refused_to_writers_and_open_to_admin_keys(
    api: APIClient, make_key: Callable[..., str], alice: User
) -> None:
    write(alice, "flood", body="The tide.")
    writer = api.post(
        "/api/v1/lore/flood/publish", {"revision": 1}, format="json", **bearer(make_key("lore"))
    )
    assert writer.status_code == 403

    admin = api.post(
        "/api/v1/lore/flood/publish",
        {"revision": 1},
        format="json",
        **bearer(make_key("lore", "admin")),
    )
    assert admin.status_code == 200 and admin.json()["published_revision"] == 1


def test_search_finds_published_lore_as_a_persona_knows_it(
    api: APIClient, key: str, alice: User, erin: User
) -> None:
    write(alice, "mara-voss", kind="character", title="Mara Voss", body="Morgue attendant.")
    write(
        alice,
        "ledger",
        kind="item",
        title="The Ledger of Debts",
        knowledge_scope=["mara-voss"],
        body="The broker writes every body he buys and the debt it left in a calfskin book.",
    )
    write(alice, "fog", title="Fog", body="Fog comes off the marsh every evening.")
    for slug in ("mara-voss", "ledger", "fog"):
        services.lore_entry_publish(slug=slug, revision_number=1, published_by=erin)
        services.lore_entry_index(entry_id=LoreEntry.objects.get(slug=slug).pk)

    mara = api.get(
        "/api/v1/lore/search",
        {"q": "where are the debts written", "persona": "mara-voss"},
        **bearer(key),
    ).json()
    assert mara["results"][0]["slug"] == "ledger" and mara["backend"] == "embedded"

    fog = api.get("/api/v1/lore/search", {"q": "ledger of debts", "persona": "fog"}, **bearer(key))
    assert fog.status_code == 400  # fog is not a character, so not a persona


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("", {"q"}),
        ("?q=", {"q"}),
        ("?q=%20%20", {"q"}),
        ("?q=x&limit=abc", {"limit"}),
        ("?q=x&limit=500", {"limit"}),
        ("?q=x&persona=No Such", {"persona"}),
        ("?q=x&persona=ghost", {"persona"}),
        ("?q=x&max_spoiler=7", {"max_spoiler"}),
        ("?q=x&colour=red", {"colour"}),
        ("?q=" + "x" * 501, {"q"}),
    ],
)
def test_malformed_searches_are_400s_naming_the_parameter(
    api: APIClient, key: str, query: str, fields: set[str]
) -> None:
    response = api.get(f"/api/v1/lore/search{query}", **bearer(key))
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["fields"]) == fields


def test_unknown_entries_are_json_404s(api: APIClient, key: str) -> None:
    response = api.get("/api/v1/lore/nobody", **bearer(key))
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"
    assert LoreRevision.objects.count() == 0
