"""Router fixtures: tier settings pointed at engines a test controls."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from apps.router import caches
from tests.support.live_asgi import serve_asgi


def tiers(**overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Tier settings where every tier has no endpoint unless the test names one."""
    base: dict[str, dict[str, Any]] = {
        tier: {
            "urls": [],
            "model": tier,
            "engine": "cpu",
            "fallback_urls": [],
            "fallback_model": tier,
        }
        for tier in ("gold", "silver", "bronze")
    }
    for tier, conf in overrides.items():
        base[tier].update(conf)
    return base


def _clear_router_state() -> None:
    from django.conf import settings

    from apps.router import costs, limits
    from apps.security import keycache

    caches._local._spaces.clear()
    costs._pending.clear()
    costs._pending_answers.clear()
    limits._local.minute.clear()
    limits._local.spent.clear()
    keycache.forget_all()
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        prefix = settings.CACHES["default"].get("KEY_PREFIX", "bb")
        for pattern in (f"{prefix}:router:*", f"{prefix}:limits:*"):
            for name in client.scan_iter(pattern):
                client.delete(name)
        client.close()


@pytest.fixture(autouse=True)
def _fresh_router_state() -> Iterator[None]:
    """Each test starts with empty caches, rate-limit counters and key lookups."""
    _clear_router_state()
    yield
    _clear_router_state()


@dataclass(frozen=True)
class LiveServer:
    """The real ASGI application (gateway, Django, websockets, MCP) on uvicorn in a thread."""

    url: str


@pytest.fixture
def asgi_server(transactional_db: None) -> Iterator[LiveServer]:
    with serve_asgi() as url:
        yield LiveServer(url)
