"""``/health/``: 200 with every dependency up, 503 naming whichever is down."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest
from django.test import Client

EXPECTED = {
    "database",
    "cache",
    "channel_layer",
    "broker",
    "worker",
    "engine:gold",
    "engine:silver",
    "engine:bronze",
}


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_health_is_200_when_every_dependency_is_up(
    client: Client, celery_worker: subprocess.Popen[bytes]
) -> None:
    # An engine busy finishing an earlier test's long answer may miss one probe: health is a
    # point-in-time view, so ask until every dependency has been seen up at once.
    deadline = time.monotonic() + 30
    response = client.get("/health/")
    while response.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        response = client.get("/health/")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == EXPECTED
    assert all(check["ok"] for check in body["checks"].values())


@pytest.mark.django_db(transaction=True)
def test_health_is_503_naming_a_dead_engine_and_a_missing_worker(
    client: Client, settings: Any
) -> None:
    settings.BODYBROKER_TIERS = {
        "gold": {"urls": ["http://127.0.0.1:9"], "model": "gold"},
        "silver": {"urls": ["http://127.0.0.1:9"], "model": "silver"},
        "bronze": {"urls": ["http://127.0.0.1:9"], "model": "silver"},
    }
    # A worker counts as alive for three heartbeat intervals; with an interval this short, no
    # heartbeat (even one the suite's worker just wrote) is recent enough.
    settings.BODYBROKER_WORKER_HEARTBEAT_S = 0.0001
    response = client.get("/health/")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert {"engine:gold", "engine:silver", "engine:bronze", "worker"} <= set(body["failing"])
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["cache"]["ok"] is True
    assert "127.0.0.1:9" in body["checks"]["engine:gold"]["detail"]


@pytest.mark.django_db
def test_health_names_an_unreachable_cache(client: Client, settings: Any) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
        }
    }
    response = client.get("/health/")
    assert response.status_code == 503
    assert "cache" in response.json()["failing"]
