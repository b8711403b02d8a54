"""The NPC definitions REST API: scopes, strict input, 400s naming fields, 404s, the schema.

Who may change NPCs, and the change requests that definition changes become, are in
``test_definitions_rights.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.npcs import services
from tests.conftest import bearer

WATCHMAN: dict[str, Any] = {
    "slug": "jory",
    "name": "Jory Hale",
    "role": "night watchman",
    "archetype": "guard",
    "safety_lines": ["Move along."],
}


@pytest.fixture
def lore_key(make_key: Callable[..., str]) -> str:
    return make_key("lore", name="writers' tool")


@pytest.fixture
def npc_key(make_key: Callable[..., str]) -> str:
    return make_key("npc", name="NPC designer")


def create(api: APIClient, key: str, **fields: Any) -> Any:
    return api.post("/api/v1/npcs/", {**WATCHMAN, **fields}, format="json", **bearer(key))


def error_fields(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    fields: dict[str, Any] = body["error"]["fields"]
    return fields


def test_an_npc_key_creates_and_retunes_an_npc_and_a_lore_key_reads_and_lists_it(
    api: APIClient, npc_key: str, lore_key: str
) -> None:
    created = create(api, npc_key)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["slug"] == "jory" and body["micro_policy"] == "guard"
    assert {"name": "patrol", "args": ["route"]} in body["allowed_intents"]
    assert body["prompt"].startswith("You are Jory Hale, night watchman.")

    read = api.get("/api/v1/npcs/jory", **bearer(lore_key))
    assert read.status_code == 200 and read.json()["default_intent"] == "idle"

    patched = api.patch(
        "/api/v1/npcs/jory",
        {"intent_hz": 2, "intent_max_tokens": 4},
        format="json",
        **bearer(npc_key),
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["intent_hz"] == 2.0 and patched.json()["intent_max_tokens"] == 4

    put = api.put(
        "/api/v1/npcs/jory", {"dialogue_max_tokens": 50}, format="json", **bearer(npc_key)
    )
    assert put.status_code == 200 and put.json()["dialogue_max_tokens"] == 50

    listed = api.get("/api/v1/npcs/", **bearer(lore_key)).json()["results"]
    assert [n["slug"] for n in listed] == ["jory"]
    assert api.get("/api/v1/npcs/?active=false", **bearer(lore_key)).json()["results"] == []


def test_game_and_lore_keys_read_but_cannot_write_and_other_scopes_get_nothing(
    api: APIClient, make_key: Callable[..., str], npc_key: str, lore_key: str
) -> None:
    create(api, npc_key)
    for reader in (make_key("game"), lore_key):
        assert api.get("/api/v1/npcs/jory", **bearer(reader)).status_code == 200
        assert create(api, reader, slug="other").status_code == 403
        refused = api.patch("/api/v1/npcs/jory", {"name": "x"}, format="json", **bearer(reader))
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "permission_denied"
    infer = make_key("infer", "jobs")
    assert api.get("/api/v1/npcs/", **bearer(infer)).status_code == 403
    assert api.get("/api/v1/npcs/").status_code in (401, 403)
    admin = make_key("admin")
    assert create(api, admin, slug="admin-made").status_code == 201


def test_bad_input_is_a_400_naming_each_field_and_nothing_is_saved(
    api: APIClient, npc_key: str
) -> None:
    response = create(api, npc_key, mood="grim")
    assert response.status_code == 400 and error_fields(response) == {"mood": ["unknown field"]}

    response = create(
        api, npc_key, intent_hz="1", intent_max_tokens=9, micro_policy="wanderer", name=7
    )
    assert response.status_code == 400
    fields = error_fields(response)
    assert set(fields) == {"intent_hz", "intent_max_tokens", "micro_policy", "name"}
    assert api.get("/api/v1/npcs/jory", **bearer(npc_key)).status_code == 404

    response = create(api, npc_key, safety_lines=[])
    assert response.status_code == 400 and "safety_lines" in error_fields(response)

    response = create(api, npc_key, allowed_intents=[{"name": "walk", "args": ["x-1"]}])
    assert response.status_code == 400 and "allowed_intents" in error_fields(response)

    response = create(api, npc_key, allowed_intents=[{"name": "walk", "speed": 2}])
    assert response.status_code == 400 and "allowed_intents" in error_fields(response)

    response = create(api, npc_key, slug="Jory Hale")
    assert response.status_code == 400 and "slug" in error_fields(response)

    response = api.post("/api/v1/npcs/", [1, 2], format="json", **bearer(npc_key))
    assert response.status_code == 400 and "non_field_errors" in error_fields(response)


def test_updates_reject_unknown_fields_bad_defaults_and_slug_changes(
    api: APIClient, npc_key: str
) -> None:
    create(api, npc_key)
    for change, field in (
        ({"slug": "renamed"}, "slug"),
        ({"default_intent": "fly"}, "default_intent"),
        ({"intent_hz": 5}, "intent_hz"),
        ({"active": "yes"}, "active"),
    ):
        response = api.patch("/api/v1/npcs/jory", change, format="json", **bearer(npc_key))
        assert response.status_code == 400, change
        assert field in error_fields(response)
    assert api.get("/api/v1/npcs/jory", **bearer(npc_key)).json()["intent_hz"] == 1.0


def test_unknown_npcs_are_404s_in_the_error_shape(api: APIClient, npc_key: str) -> None:
    for response in (
        api.get("/api/v1/npcs/nobody", **bearer(npc_key)),
        api.patch("/api/v1/npcs/nobody", {"name": "x"}, format="json", **bearer(npc_key)),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found"


def test_the_list_costs_a_fixed_number_of_queries(
    api: APIClient, lore_key: str, django_assert_max_num_queries: Any
) -> None:
    for n in range(5):
        services.npc_create(slug=f"npc-{n}", fields={"name": f"N{n}", "safety_lines": ["No."]})
    with django_assert_max_num_queries(3):  # key lookup, its last-used touch, the NPCs
        response = api.get("/api/v1/npcs/", **bearer(lore_key))
    assert len(response.json()["results"]) == 5


def test_the_openapi_schema_documents_the_npc_endpoints(api: APIClient, npc_key: str) -> None:
    schema = api.get("/api/schema/", {"format": "json"}, **bearer(npc_key))
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/npcs/" in paths and "/api/v1/npcs/{slug}" in paths
    assert "patch" in paths["/api/v1/npcs/{slug}"]
