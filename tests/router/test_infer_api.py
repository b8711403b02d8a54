"""``POST /api/v1/infer``: end to end through the real CPU engines, and every kind of bad input."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.router.personas import bundled
from tests.conftest import bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def infer_key(make_key: Callable[..., str]) -> str:
    return make_key("infer")


def post(api: APIClient, key: str, body: object) -> object:
    return api.post("/api/v1/infer", body, format="json", **bearer(key))


@pytest.mark.engine
def test_a_prompt_is_answered_by_the_silver_engine(
    api: APIClient, infer_key: str, engines: dict[str, str]
) -> None:
    response = post(
        api,
        infer_key,
        {"prompt": "Say hello to the night watchman.", "max_tokens": 12, "temperature": 0},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["tier"] == "silver"
    assert body["source"] == "model"
    assert body["model"] == "silver"
    assert body["text"].strip()
    assert 0 < body["usage"]["completion_tokens"] <= 12
    assert body["route_reason"] == "default tier for interactive SLA"


@pytest.mark.engine
def test_a_short_real_time_request_is_answered_by_gold(
    api: APIClient, infer_key: str, engines: dict[str, str]
) -> None:
    response = post(
        api,
        infer_key,
        {
            "messages": [
                {"role": "system", "content": "Answer with one word."},
                {"role": "user", "content": "Flee or hide?"},
            ],
            "sla": "real-time",
            "max_tokens": 4,
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["tier"] == "gold"
    assert body["usage"]["completion_tokens"] <= 4


def test_with_every_engine_down_silver_still_answers_in_character(
    api: APIClient, infer_key: str, settings: object
) -> None:
    settings.BODYBROKER_TIERS = {  # type: ignore[attr-defined]
        tier: {"urls": ["http://127.0.0.1:9"], "model": tier, "fallback_urls": []}
        for tier in ("gold", "silver", "bronze")
    }
    response = post(
        api, infer_key, {"prompt": "anyone there?", "max_tokens": 4, "persona": "watchman"}
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["tier"], body["source"]) == ("silver", "template")
    assert body["text"] in bundled()["watchman"].lines
    assert "EngineUnavailable" in body["fallback_reasons"][0]


def test_malformed_json_is_a_400_with_a_json_error(api: APIClient, infer_key: str) -> None:
    response = api.post(
        "/api/v1/infer", data="{not json", content_type="application/json", **bearer(infer_key)
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request"
    assert "JSON" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "hi", "max_tokens": "12"}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 12.5}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": True}, "max_tokens"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "hi", "sla": "yesterday"}, "sla"),
        ({"prompt": "hi", "temperature": "warm"}, "temperature"),
        ({"prompt": "hi", "needs_tools": "yes"}, "needs_tools"),
        ({"prompt": "hi", "max_token": 12}, "max_token"),
        ({"messages": [{"role": "user"}]}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages"),
        ({"messages": []}, "messages"),
        ({"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}, "prompt"),
        ({}, "prompt"),
    ],
)
def test_bad_fields_are_a_400_naming_the_field(
    api: APIClient, infer_key: str, body: dict[str, object], field: str
) -> None:
    response = post(api, infer_key, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert field in error["fields"], error


def test_a_body_that_is_not_an_object_is_a_400(api: APIClient, infer_key: str) -> None:
    response = post(api, infer_key, ["prompt", "hi"])
    assert response.status_code == 400
    assert "JSON object" in response.json()["error"]["message"]


def test_an_oversized_prompt_is_refused(api: APIClient, infer_key: str, settings: object) -> None:
    settings.BODYBROKER_MAX_PROMPT_CHARS = 100  # type: ignore[attr-defined]
    response = post(api, infer_key, {"prompt": "x" * 101})
    assert response.status_code == 400
    assert "limit is 100" in response.json()["error"]["fields"]["messages"][0]


def test_the_openapi_schema_describes_infer(api: APIClient, infer_key: str) -> None:
    response = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "/api/v1/infer" in response.content.decode()


def test_a_body_over_the_upload_limit_is_a_413(
    api: APIClient, infer_key: str, settings: object
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048  # type: ignore[attr-defined]
    response = post(api, infer_key, {"prompt": "x" * 5000})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
