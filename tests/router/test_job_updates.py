"""``/ws/jobs/``: a subscriber hears a Bronze job's transitions as they happen."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from apps.router import tasks
from apps.router.models import Job
from bodybroker.asgi import application
from tests.router.conftest import tiers

pytestmark = pytest.mark.django_db(transaction=True)


def socket(key: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, "/ws/jobs/", headers=[(b"authorization", f"Bearer {key}".encode())]
    )


async def test_a_subscriber_hears_each_transition_until_the_job_fails(
    make_key: Callable[..., str], settings: Any
) -> None:
    settings.BODYBROKER_TIERS = tiers(bronze={"urls": ["http://127.0.0.1:9"]})
    settings.BODYBROKER_BRONZE_BACKOFF_BASE_S = 0.0
    settings.BODYBROKER_BRONZE_TRIES_PER_BACKEND = 2
    key = await sync_to_async(make_key)("jobs", "admin")
    job = await Job.objects.acreate(
        request={"messages": [{"role": "user", "content": "x"}], "max_tokens": 4}
    )
    communicator = socket(key)
    assert (await communicator.connect())[0]
    await communicator.send_to(
        text_data=json.dumps({"type": "job.subscribe", "job_id": str(job.id)})
    )
    assert json.loads(await communicator.receive_from())["status"] == "queued"
    await sync_to_async(tasks.run_bronze_job.apply)(args=(str(job.id),))
    seen = []
    while not seen or seen[-1] != "failed":
        seen.append(json.loads(await communicator.receive_from(timeout=5))["status"])
    assert seen[0] == "running" and "queued" in seen  # claimed, then back to wait its retry
    await communicator.disconnect()


async def test_bad_subscriptions_get_errors_and_the_socket_stays_open(
    make_key: Callable[..., str],
) -> None:
    key = await sync_to_async(make_key)("jobs")
    communicator = socket(key)
    assert (await communicator.connect())[0]
    for frame, code in [
        ("{", "invalid_json"),
        ('{"type": "job.explode", "job_id": "x"}', "unknown_type"),
        ('{"type": "job.subscribe", "job_id": "nope"}', "bad_field"),
        (
            '{"type": "job.subscribe", "job_id": "6f1c1a52-3c7e-4d0a-9a51-2f3c6d8e9b10"}',
            "not_found",
        ),
    ]:
        await communicator.send_to(text_data=frame)
        assert json.loads(await communicator.receive_from())["code"] == code
    await communicator.disconnect()


async def test_a_key_without_the_jobs_scope_cannot_listen(make_key: Callable[..., str]) -> None:
    communicator = socket(await sync_to_async(make_key)("game"))
    assert (await communicator.connect())[0] is False
