"""``/health/``: 200 with every dependency up, 503 naming whichever is down; a busy engine is
busy, not down."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import urllib.request
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.router import pools as router_pools
from apps.router.engines import engine_health
from inference.client import Timeouts, get_client
from inference.errors import EngineHTTPError, EngineTimeout
from inference.process import EngineProcess
from tests.support.scripted_engine import Script, ScriptedEngine, json_response

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
    # The worker's heartbeat row returns a moment after the flush that ended the previous test:
    # health is a point-in-time view, so ask until every dependency has been seen up at once.
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
    assert {check["state"] for check in body["checks"].values()} <= {"up", "busy"}


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
    assert body["checks"]["engine:gold"]["state"] == "down"  # refused: gone, not busy
    assert body["checks"]["worker"]["state"] == "down"


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


def generating(answer: dict[str, str]) -> Script:
    """An engine that is busy generating (it answers nothing) unless told to answer a 5xx or,
    being idle, its model list."""

    async def script(writer: asyncio.StreamWriter) -> None:
        if answer["with"] == "503":
            writer.write(json_response(503, {"error": "model crashed"}, "Service Unavailable"))
        elif answer["with"] == "models":
            writer.write(json_response(200, {"object": "list", "data": [{"id": "silver"}]}))
        else:
            await asyncio.sleep(3600)

    return script


def point_every_tier_at(settings: Any, url: str) -> None:
    settings.BODYBROKER_TIERS = {
        tier: {"urls": [url], "model": "silver", "fallback_urls": []}
        for tier in ("gold", "silver", "bronze")
    }


QUICK = Timeouts(connect=0.5, first_token=0.5, total=0.5, health=0.5)


async def test_a_silent_engine_is_busy_while_its_requests_only_time_out(settings: Any) -> None:
    async with ScriptedEngine(generating({"with": "nothing"})) as engine:
        point_every_tier_at(settings, engine.base_url)
        # The open port is all the probe learns: busy. The active checks take it out of rotation
        # for a back-off (real-time requests take the next link) without calling it down.
        found = await engine_health(engine.base_url, "silver")
        assert (found.state, found.ok, found.evidence) == ("busy", True, "port"), found
        await router_pools.pools().check_health()
        endpoints = router_pools.pools().endpoints_at(engine.base_url)
        assert len(endpoints) == 3 and not any(e.healthy for e in endpoints)
        found = await engine_health(engine.base_url, "silver")
        assert (found.state, found.ok) == ("busy", True), found

        # A request sent there times out; the pools record it, as the chains do. A busy engine
        # times requests out too, so it is still busy, not down.
        with pytest.raises(EngineTimeout) as failed:
            await get_client(engine.base_url, "silver", QUICK).chat(
                [{"role": "user", "content": "Anyone there?"}], max_tokens=4
            )
        endpoints[0].record_failure(failed.value)
        found = await engine_health(engine.base_url, "silver")
        assert (found.state, found.ok) == ("busy", True), found

        # Only timeouts and no answer of any kind for longer than a generation may take: hung.
        settings.BODYBROKER_BRONZE_TIMEOUT_S = 0.2
        settings.BODYBROKER_ENGINE_TIMEOUTS = {"connect": 0.5, "first_token": 0.2, "total": 0.2}
        endpoints = router_pools.pools().endpoints_at(engine.base_url)  # rebuilt: new settings
        with pytest.raises(EngineTimeout) as failed:
            await get_client(engine.base_url, "silver", QUICK).chat(
                [{"role": "user", "content": "Still there?"}], max_tokens=4
            )
        endpoints[0].record_failure(failed.value)
        await asyncio.sleep(0.3)
        found = await engine_health(engine.base_url, "silver")
        assert (found.state, found.ok, found.evidence) == ("down", False, "requests"), found
        assert "nothing answered" in found.detail


async def test_an_engine_that_failed_a_request_with_a_5xx_is_down_until_it_answers_again(
    settings: Any,
) -> None:
    answer = {"with": "503"}
    async with ScriptedEngine(generating(answer)) as engine:
        point_every_tier_at(settings, engine.base_url)
        with pytest.raises(EngineHTTPError) as failed:
            await get_client(engine.base_url, "silver", QUICK).chat(
                [{"role": "user", "content": "Anyone there?"}], max_tokens=4
            )
        router_pools.pools().endpoints_at(engine.base_url)[0].record_failure(failed.value)
        answer["with"] = "nothing"
        found = await engine_health(engine.base_url, "silver")
        assert (found.state, found.ok, found.evidence) == ("down", False, "requests"), found
        assert "5xx" in found.detail

        # Restarted, it answers its probe between generations: up, and busy again after that.
        answer["with"] = "models"
        found = await engine_health(engine.base_url, "silver")
        assert (found.state, found.ok) == ("up", True), found
        answer["with"] = "nothing"
        found = await engine_health(engine.base_url, "silver")
        assert (found.state, found.ok) == ("busy", True), found
