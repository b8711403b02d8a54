"""A client that leaves the OpenAI door, or a deadline that passes, stops the engine's
generation: real gateway (uvicorn), real chains, real CPU engines.

The engines serve one request at a time, so a generation nobody waits for would delay every
request behind it: each test drops a long answer and times a short request to the same engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from apps.router.metrics import REGISTRY
from tests.router.conftest import LiveServer
from tests.support.long_answers import (
    LONG_MESSAGES,
    LONG_RESPONSE_FORMAT,
    LONG_TOKENS,
    assert_not_delayed,
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

    assert_not_delayed(engines["silver"], "silver", alone)

    assert chunks == 5
    assert _counted("silver", "client_disconnect", before)


def test_a_whole_answer_whose_client_gave_up_stops_the_engine(
    asgi_server: LiveServer, make_key: Callable[..., str], engines: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {make_key('infer')}"}
    alone = short_request_s(engines["silver"], "silver")
    before = cancelled("silver", "client_disconnect")
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=httpx.Timeout(60, read=1.0)) as c:
        c.post(f"{asgi_server.url}/v1/chat/completions", json=LONG_BODY, headers=headers)

    assert_not_delayed(engines["silver"], "silver", alone)

    assert _counted("silver", "client_disconnect", before)


def test_a_rest_infer_whose_client_gave_up_stops_the_engine(
    asgi_server: LiveServer, make_key: Callable[..., str], engines: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {make_key('infer')}"}
    body = {**LONG_BODY, "sla": "interactive"}
    del body["model"]
    alone = short_request_s(engines["silver"], "silver")
    before = cancelled("silver", "client_disconnect")
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=httpx.Timeout(60, read=1.0)) as c:
        c.post(f"{asgi_server.url}/api/v1/infer", json=body, headers=headers)

    assert_not_delayed(engines["silver"], "silver", alone)
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
    assert_not_delayed(engines["silver"], "silver", alone)

    assert response.status_code == 200
    assert response.json()["x_bodybroker"]["source"] != "model"
    assert cancelled("silver", "deadline") > before


# --- Bronze ------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
LONG_JOB = {
    "messages": LONG_MESSAGES,
    "max_tokens": LONG_TOKENS,
    "response_format": LONG_RESPONSE_FORMAT,
}
# What a Celery worker process runs for one Bronze attempt (apps.router.tasks.run_bronze_job).
ATTEMPT = """
import json, sys
import django
django.setup()
from apps.router.bronze import EngineBackend
print("asking", flush=True)
EngineBackend(sys.argv[1], "silver", "cpu").complete(
    job_id="j", attempt=1, request=json.loads(sys.argv[2])
)
"""


def test_a_bronze_attempt_whose_worker_dies_stops_the_engine(engines: dict[str, str]) -> None:
    alone = short_request_s(engines["silver"], "silver")
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", ATTEMPT, engines["silver"], json.dumps(LONG_JOB)],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "bodybroker.settings.test"},
        stdout=subprocess.PIPE,
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline() == b"asking\n"
        time.sleep(1.5)  # connected and generating
    finally:
        worker.kill()  # as the OOM killer or a hard time limit would
        worker.wait()

    assert_not_delayed(engines["silver"], "silver", alone)


def test_a_bronze_attempt_interrupted_by_its_soft_time_limit_stops_the_engine(
    engines: dict[str, str],
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    from apps.router.bronze import EngineBackend

    def soft_time_limit(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded()  # as Celery's handler does, in the worker's main thread

    alone = short_request_s(engines["silver"], "silver")
    previous = signal.signal(signal.SIGALRM, soft_time_limit)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(SoftTimeLimitExceeded):
            EngineBackend(engines["silver"], "silver", "cpu").complete(
                job_id="j", attempt=1, request=LONG_JOB
            )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert_not_delayed(engines["silver"], "silver", alone)


def test_attempts_lost_with_their_worker_are_counted() -> None:
    from apps.router.models import Job, JobAttempt
    from apps.router.services import job_claim

    before = cancelled("bronze", "worker_lost")
    job = Job.objects.create(
        request={"messages": LONG_MESSAGES, "max_tokens": 8}, status="running", attempts=1
    )
    JobAttempt.objects.create(job=job, number=1, backend="engine", worker="gone@nowhere")

    assert job_claim(job_id=str(job.pk), backend_for=lambda _failed: "engine", worker="here")
    assert cancelled("bronze", "worker_lost") == before + 1
