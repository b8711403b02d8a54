"""``/health/``: 200 with every dependency up, 503 naming whichever is down; a busy engine is
busy, not down."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.router.engines import engine_health
from apps.router.pools import pools
from inference.client import Timeouts, get_client
from inference.errors import EngineError
from inference.process import EngineProcess

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


def long_generation(base_url: str, model: str, max_tokens: int) -> threading.Thread:
    """Ask the engine directly (not through this process's pools) for ``max_tokens`` tokens,
    end-of-sequence suppressed so it cannot stop early, in a background thread."""
    body = {
        "model": model,
        "messages": [
            {"role": "user", "content": "Tell the longest tale of the house on the hill."}
        ],
        "max_tokens": max_tokens,
        "logit_bias": {"0": -100, "1": -100, "2": -100},  # SmolLM2's end tokens
    }
    request = urllib.request.Request(  # noqa: S310 — a loopback engine
        f"{base_url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )

    def run() -> None:
        with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310
            response.read()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_health_stays_200_with_the_engine_busy_during_a_long_generation(
    client: Client, engines: dict[str, str], celery_worker: subprocess.Popen[bytes], adam: User
) -> None:
    # The engine answers its probe only between generations; while one runs, /health/ must say
    # busy and keep answering 200 (a load balancer would otherwise pull a serving node).
    # First every dependency up at once (the worker's heartbeat row returns after the flush
    # that ended the previous test).
    deadline = time.monotonic() + 30
    while client.get("/health/").status_code != 200:
        assert time.monotonic() < deadline, client.get("/health/").json()
        time.sleep(0.5)
    generation = long_generation(engines["silver"], "silver", max_tokens=1200)
    samples: list[tuple[int, str]] = []
    while generation.is_alive() and len(samples) < 6:
        response = client.get("/health/")
        body = response.json()
        samples.append((response.status_code, body["checks"]["engine:silver"]["state"]))
        assert response.status_code == 200, body
        assert body["checks"]["engine:silver"]["ok"] is True
    assert "busy" in {state for _, state in samples}, samples
    # The operators' dashboard says so too, as its own state rather than "down".
    client.force_login(adam)
    page = client.get("/dashboards/?partial=health").content.decode()
    if generation.is_alive():
        assert ">busy<" in page and ">down<" not in page, page
    generation.join(timeout=300)


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_health_is_503_with_the_engine_down_once_its_process_is_gone(
    client: Client, settings: Any
) -> None:
    engine = EngineProcess("gold")
    engine.start()
    try:
        engine.wait_healthy(timeout=120)
        settings.BODYBROKER_TIERS = {
            "gold": {"urls": [engine.base_url], "model": "gold"},
            "silver": {"urls": [engine.base_url], "model": "gold"},
            "bronze": {"urls": [engine.base_url], "model": "gold"},
        }
        before = client.get("/health/").json()["checks"]["engine:gold"]
        assert before["state"] == "up", before
    finally:
        engine.stop()
    response = client.get("/health/")
    body = response.json()
    assert response.status_code == 503
    assert "engine:gold" in body["failing"]
    assert body["checks"]["engine:gold"]["state"] == "down"
    assert body["checks"]["engine:gold"]["ok"] is False


@pytest.fixture
def hung_engine() -> Iterator[str]:
    """A port that accepts connections and never answers: a hung engine, or a very busy one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


async def test_a_silent_engine_is_busy_until_the_requests_sent_there_fail(
    hung_engine: str, settings: Any
) -> None:
    settings.BODYBROKER_TIERS = {
        tier: {"urls": [hung_engine], "model": "silver", "fallback_urls": []}
        for tier in ("gold", "silver", "bronze")
    }
    # No request has failed there yet: the open port is all the probe knows, so it is busy.
    found = await engine_health(hung_engine, "silver")
    assert (found.state, found.ok) == ("busy", True), found
    # The active checks leave a busy engine in rotation.
    await pools().check_health()
    endpoints = pools().endpoints_at(hung_engine)
    assert len(endpoints) == 3 and all(e.healthy for e in endpoints)

    # A request sent there times out, as a real one would; the pools record it (passive health).
    quick = Timeouts(connect=0.5, first_token=0.5, total=0.5, health=0.5)
    with pytest.raises(EngineError) as failed:
        await get_client(hung_engine, "silver", quick).chat(
            [{"role": "user", "content": "Anyone there?"}], max_tokens=4
        )
    endpoints[0].record_failure(failed.value)

    found = await engine_health(hung_engine, "silver")
    assert (found.state, found.ok, found.evidence) == ("down", False, "requests"), found
    assert "failed" in found.detail
