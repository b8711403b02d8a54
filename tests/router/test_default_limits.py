"""Keys that set no limits get the default ones (BODYBROKER_DEFAULT_*): over them both inference
doors answer 429 with Retry-After; a key's own limits replace the defaults."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from django.utils import timezone

from apps.router.limits import Limits, limits_for
from apps.security.models import ApiKey
from tests.router.conftest import LiveServer, tiers

CHAT = {"model": "silver", "messages": [{"role": "user", "content": "Who goes there?"}]}


def room_in_this_minute(needed_s: float = 10.0) -> None:
    """Limits count per UTC minute: start a burst where it cannot straddle two minutes."""
    left = 60 - time.time() % 60
    if left < needed_s:
        time.sleep(left + 0.1)


@pytest.mark.django_db
def test_keys_that_set_nothing_get_the_documented_defaults(settings: Any) -> None:
    key = ApiKey(name="k", prefix="p", digest="d", scopes=["infer"])
    assert limits_for(key) == Limits(600, 200_000, None)
    settings.BODYBROKER_DEFAULT_DAILY_BUDGET_USD = 5.0
    assert limits_for(key).daily_budget_usd == 5.0
    own = ApiKey(
        name="k",
        prefix="q",
        digest="d",
        requests_per_minute=0,
        tokens_per_minute=50,
        daily_budget_usd=1.0,
    )
    assert limits_for(own) == Limits(0, 50, 1.0)  # a key's own limits win, 0 = none


def test_a_key_without_limits_is_held_to_the_default_rate_on_both_doors(
    asgi_server: LiveServer, make_key: Callable[..., str], settings: Any
) -> None:
    settings.BODYBROKER_TIERS = tiers()  # no engine: the template link answers at once
    settings.BODYBROKER_DEFAULT_RPM = 2
    raw = make_key("infer")
    headers = {"Authorization": f"Bearer {raw}"}
    room_in_this_minute()
    chat = [
        httpx.post(f"{asgi_server.url}/v1/chat/completions", json=CHAT, headers=headers)
        for _ in range(3)
    ]
    assert [r.status_code for r in chat] == [200, 200, 429]
    assert chat[2].json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(chat[2].headers["retry-after"]) <= 60

    infer = httpx.post(
        f"{asgi_server.url}/api/v1/infer",
        json={"prompt": "Who goes there?", "max_tokens": 8},
        headers=headers,
    )
    assert infer.status_code == 429
    assert infer.json()["error"]["type"] == "rate_limited"
    assert 1 <= int(infer.headers["retry-after"]) <= 60

    bench = make_key("infer", name="bench key")
    ApiKey.objects.filter(name="bench key").update(requests_per_minute=10)
    own = [
        httpx.post(
            f"{asgi_server.url}/v1/chat/completions",
            json=CHAT,
            headers={"Authorization": f"Bearer {bench}"},
        ).status_code
        for _ in range(4)
    ]
    assert own == [200, 200, 200, 200]


def test_a_spent_default_daily_budget_is_a_429(
    asgi_server: LiveServer, make_key: Callable[..., str], settings: Any
) -> None:
    from apps.router.models import UsageDaily

    settings.BODYBROKER_DEFAULT_DAILY_BUDGET_USD = 0.5
    raw = make_key("infer")
    key = ApiKey.objects.get(name="test key")
    UsageDaily.objects.create(
        day=timezone.now().date(), tier="silver", key=key, requests=9, cost_usd=0.75
    )
    response = httpx.post(
        f"{asgi_server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {raw}"},
        json=CHAT,
    )
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "budget_limit"
    assert int(response.headers["retry-after"]) >= 1
