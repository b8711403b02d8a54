"""``/metrics``: Prometheus text for admins, refused to everyone else; usage and cost per key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.router import costs
from apps.router.models import AnswersDaily, UsageDaily
from apps.security.models import ApiKey
from tests.conftest import bearer
from tests.router.conftest import LiveServer

pytestmark = pytest.mark.django_db(transaction=True)


def test_metrics_need_the_admin_scope(api: APIClient, make_key: Callable[..., str]) -> None:
    assert api.get("/metrics").status_code == 401
    assert api.get("/metrics", **bearer(make_key("infer"))).status_code == 403
    response = api.get("/metrics", **bearer(make_key("admin")))
    assert response.status_code == 200
    assert b"bodybroker_queue_depth" in response.content


def test_answers_show_up_by_tier_and_source_and_cost_is_summed_per_key(
    asgi_server: LiveServer, make_key: Callable[..., str], settings: Any
) -> None:
    import httpx

    from tests.support.scripted_engine import ScriptedEngine, completion

    raw = make_key("infer")
    headers = {"Authorization": f"Bearer {raw}"}
    body = {"model": "silver", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    engine = ScriptedEngine(completion("hello there", completion_tokens=4))
    loop.run_until_complete(engine.__aenter__())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        settings.BODYBROKER_TIERS = {
            "gold": {"urls": [], "model": "gold", "fallback_urls": []},
            "silver": {"urls": [engine.base_url], "model": "silver", "fallback_urls": []},
            "bronze": {"urls": [], "model": "bronze", "fallback_urls": []},
        }
        for _ in range(3):
            response = httpx.post(
                f"{asgi_server.url}/v1/chat/completions", json=body, headers=headers
            )
            assert response.headers["x-bodybroker-source"] == "model"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    text = httpx.get(
        f"{asgi_server.url}/metrics",
        headers={"Authorization": f"Bearer {make_key('admin', name='ops')}"},
    ).text
    assert 'bodybroker_requests_total{source="model",tier="silver"}' in text
    assert "bodybroker_request_seconds_bucket" in text
    assert 'bodybroker_tokens_total{direction="out",tier="silver"}' in text
    costs.usage_flush()
    usage = UsageDaily.objects.get(key=ApiKey.objects.get(name="test key"), tier="silver")
    assert (usage.requests, usage.completion_tokens) == (3, 12)
    assert usage.cost_usd > 0
    assert usage.reference_cost_usd > usage.cost_usd  # self-hosting is cheaper than for-pay
    # The dashboards' answer counts come from the same flush, so they agree with the usage.
    answers = AnswersDaily.objects.get(tier="silver", source="model")
    assert answers.requests == 3 and sum(answers.latency_counts) == 3


def test_quantiles_come_from_histogram_buckets() -> None:
    from apps.router.selectors import _quantile

    buckets = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert _quantile(buckets, 0.5) == pytest.approx(0.01)
    assert _quantile(buckets, 0.95) == pytest.approx(0.55)
    assert _quantile([], 0.5) is None
