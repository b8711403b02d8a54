"""A client that leaves the OpenAI door, or a deadline that passes, stops the engine's
generation: real gateway (uvicorn), real chains, real CPU engines.

The engines serve one request at a time, so a generation nobody waits for would delay every
request behind it: each test drops a long answer and times a short request to the same engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from apps.router.metrics import REGISTRY
from tests.router.conftest import LiveServer
from tests.support.long_answers import (
    LONG_MESSAGES,
    LONG_RESPONSE_FORMAT,
    LONG_TOKENS,
    STOP_WITHIN_S,
    short_request_s,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

LONG_BODY = {
    "model": "silver",
    "messages": LONG_MESSAGES,
    "max_tokens": LONG_TOKENS,
    "response_format": LONG_RESPONSE_FORMAT,
}


def cancelled(tier: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "bodybroker_generations_cancelled_total", {"tier": tier, "reason": reason}
    )
    return value or 0.0


def _counted(tier: str, reason: str, before: float) -> bool:
    """The cancellation is counted (the server notices a hang-up a moment after it happens)."""
    deadline = time.monotonic() + 5
    while cancelled(tier, reason) <= before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_stream_dropped_after_a_few_chunks_stops_the_engine(
    asgi_server: LiveServer, make_key: Callable[..., str], engines: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {make_key('infer')}"}
    alone = short_request_s(engines["silver"], "silver")
    before = cancelled("silver", "client_disconnect")
    chunks = 0
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST",
            f"{asgi_server.url}/v1/chat/completions",
            json={**LONG_BODY, "stream": True},
            headers=headers,
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                chunks += 1
                if chunks == 5:
                    break  # leaving both blocks closes the connection mid-answer

    behind = short_request_s(engines["silver"], "silver")

    assert chunks == 5
    assert behind < alone + STOP_WITHIN_S, (alone, behind)
    assert _counted("silver", "client_disconnect", before)


def test_a_whole_answer_whose_client_gave_up_stops_the_engine(
    asgi_server: LiveServer, make_key: Callable[..., str], engines: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {make_key('infer')}"}
    alone = short_request_s(engines["silver"], "silver")
    before = cancelled("silver", "client_disconnect")
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=httpx.Timeout(60, read=1.0)) as c:
        c.post(f"{asgi_server.url}/v1/chat/completions", json=LONG_BODY, headers=headers)

    behind = short_request_s(engines["silver"], "silver")

    assert behind < alone + STOP_WITHIN_S, (alone, behind)
    assert _counted("silver", "client_disconnect", before)


def test_a_deadline_that_passes_mid_answer_stops_the_engine(
    asgi_server: LiveServer, make_key: Callable[..., str], engines: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {make_key('infer')}"}
    alone = short_request_s(engines["silver"], "silver")
    before = cancelled("silver", "deadline")

    response = httpx.post(
        f"{asgi_server.url}/v1/chat/completions",
        json={**LONG_BODY, "deadline_ms": 1000},
        headers=headers,
        timeout=60,
    )
    behind = short_request_s(engines["silver"], "silver")

    assert response.status_code == 200
    assert response.json()["x_bodybroker"]["source"] != "model"
    assert behind < alone + STOP_WITHIN_S, (alone, behind)
    assert cancelled("silver", "deadline") > before
