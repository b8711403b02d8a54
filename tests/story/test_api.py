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
    assert error["fields"] == {
        "base_revision": ["the entry is at revision 2"],
        "body": ["changed in revision 2 by system and by you"],
    }
    assert error["current"]["body"] == "Erin's text." and error["current"]["revision"] == 2
    assert error["yours"] == {"body": "My text."}
    assert error["merge"]["conflicts"] == [
        {"field": "body", "base": "Black water.", "theirs": "Erin's text.", "yours": "My text."}
    ]
    assert LoreEntry.objects.get(slug="ward").body == "Erin's text."


def test_a_stale_update_of_other_fields_merges_and_keeps_what_was_saved_meanwhile(
    api: APIClient, key: str, alice: User, erin: User
) -> None:
    write(alice, "ward", summary="A ward.", body="Black water.", tags=["water"])
    services.lore_entry_update(  # erin changes the summary and the tags
        slug="ward",
        base_revision=1,
        changes={"summary": "The drowned ward.", "tags": ["water", "drowned"]},
        author=erin,
    )

    response = api.patch(  # based on r1, this caller changes the body and the title
        "/api/v1/lore/ward",
        {"base_revision": 1, "title": "The Ward", "body": "Black water, rising.", "message": "m"},
        format="json",
        **bearer(key),
    )

    assert response.status_code == 200, response.content
    merged = response.json()
    assert merged["revision"] == 3 and merged["title"] == "The Ward"
    assert merged["summary"] == "The drowned ward." and merged["tags"] == ["water", "drowned"]
    assert merged["body"] == "Black water, rising."
    assert merged["merge"]["merged_from_theirs"] == ["summary", "tags"]
    assert merged["merge"]["merged_from_yours"] == ["title", "body"]
    assert merged["merge"]["conflicts"] == []
    latest = LoreRevision.objects.get(entry__slug="ward", number=3)
    assert (latest.summary, latest.message) == ("The drowned ward.", "m")


def test_a_conflict_names_every_field_both_sides_changed(
    api: APIClient, key: str, alice: User, erin: User
) -> None:
    write(alice, "ward", summary="A ward.", body="Black water.", spoiler_level=0)
    services.lore_entry_update(
        slug="ward",
        base_revision=1,
        changes={"summary": "Erin's summary.", "spoiler_level": 2, "body": "Same words."},
        author=erin,
    )

    response = api.patch(
        "/api/v1/lore/ward",
        {"base_revision": 1, "summary": "My summary.", "spoiler_level": 1, "body": "Same words."},
        format="json",
        **bearer(key),
    )

    assert response.status_code == 409
    error = response.json()["error"]
    assert set(error["fields"]) == {"base_revision", "summary", "spoiler_level"}
    merge = error["merge"]
    assert [c["field"] for c in merge["conflicts"]] == ["summary", "spoiler_level"]
    assert merge["conflicts"][1] == {"field": "spoiler_level", "base": 0, "theirs": 2, "yours": 1}
    assert merge["merged"]["summary"] == "My summary." and merge["merged"]["body"] == "Same words."
    assert LoreEntry.objects.get(slug="ward").head_number == 2  # nothing was written

    resolved = api.patch(  # the caller resolves on top of r2: their spoiler level, my summary
        "/api/v1/lore/ward",
        {"base_revision": 2, "summary": "My summary."},
        format="json",
        **bearer(key),
    )
    assert resolved.status_code == 200
    assert (resolved.json()["summary"], resolved.json()["spoiler_level"]) == ("My summary.", 2)


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


def test_asking_to_publish_opens_one_change_request_that_an_approver_decides(
    api: APIClient, make_key: Callable[..., str], alice: User, adam: User
) -> None:
    from apps.admin_ops import services as ops
    from apps.admin_ops.models import AuditEvent, ChangeRequest
    from apps.security.selectors import user_scopes

    write(alice, "flood", body="The tide.")
    for scopes in (("lore",), ("lore", "admin")):  # an admin key asks like anyone else
        asked = api.post(
            "/api/v1/lore/flood/publish",
            {"revision": 1, "reason": "ready for players"},
            format="json",
            **bearer(make_key(*scopes)),
        )
        assert asked.status_code == 202, asked.content
        assert asked.json()["status"] == "pending_approval"
        assert asked.json()["entry"]["status"] == "draft"
    change_request = ChangeRequest.objects.get()  # the second ask found the open request
    assert asked.json()["already_requested"] is True
    assert asked.json()["change_request"]["id"] == str(change_request.pk)
    assert (change_request.kind, change_request.target) == ("lore.publish", "lore:flood")
    assert change_request.payload == {"revision": 1}
    assert change_request.reason == "ready for players"
    assert LoreEntry.objects.get(slug="flood").published_number is None

    ops.change_request_approve(
        change_request_id=change_request.pk, user=adam, scopes=user_scopes(adam)
    )
    ops.change_request_execute(change_request_id=change_request.pk)

    entry = LoreEntry.objects.get(slug="flood")
    assert entry.published_number == 1 and entry.published_by == adam
    published = AuditEvent.objects.get(action="lore.publish", target="lore:flood")
    assert published.actor_user == adam


def test_asking_to_publish_a_revision_that_is_not_the_newest_is_a_409(
    api: APIClient, make_key: Callable[..., str], alice: User
) -> None:
    write(alice, "flood", body="The tide.")
    services.lore_entry_update(slug="flood", base_revision=1, changes={"body": "At night."})
    response = api.post(
        "/api/v1/lore/flood/publish", {"revision": 1}, format="json", **bearer(make_key("lore"))
    )
    assert response.status_code == 409 and response.json()["error"]["type"] == "conflict"


def test_where_a_studio_opted_out_editors_publish_at_once_and_it_is_audited(
    api: APIClient, make_key: Callable[..., str], alice: User, settings: Any
) -> None:
    from apps.admin_ops.models import AuditEvent, ChangeRequest

    settings.BODYBROKER_LORE_PUBLISH = "editors"
    write(alice, "flood", body="The tide.")
    writer = api.post(
        "/api/v1/lore/flood/publish", {"revision": 1}, format="json", **bearer(make_key("lore"))
    )
    assert writer.status_code == 202  # writers still ask
    assert LoreEntry.objects.get(slug="flood").published_number is None

    admin = api.post(
        "/api/v1/lore/flood/publish",
        {"revision": 1},
        format="json",
        **bearer(make_key("lore", "admin", name="studio tool")),
    )
    assert admin.status_code == 200 and admin.json()["published_revision"] == 1
    event = AuditEvent.objects.get(action="lore.publish", target="lore:flood")
    assert event.actor_label.startswith("key:studio tool")
    assert event.before == {"published_revision": None, "status": "draft"}
    assert event.after == {"published_revision": 1, "status": "published"}
    assert ChangeRequest.objects.count() == 1  # only the writer's


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
