"""Bronze jobs end to end: the API queues, a real worker runs them on the real engine."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.router import services
from apps.router.models import Job, JobStatus
from tests.conftest import bearer


def wait_for_job(api: APIClient, key: str, job_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(f"/api/v1/jobs/{job_id}", **bearer(key)).json()
        if body["status"] in {"succeeded", "failed"}:
            return body
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {body}")


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_an_async_request_becomes_a_job_that_a_real_worker_finishes(
    api: APIClient,
    make_key: Callable[..., str],
    celery_worker: subprocess.Popen[bytes],
) -> None:
    key = make_key("infer", "jobs")
    response = api.post(
        "/api/v1/infer",
        {"prompt": "Name one room in a haunted morgue.", "sla": "async", "max_tokens": 16},
        format="json",
        **bearer(key),
    )
    assert response.status_code == 202, response.content
    queued = response.json()
    assert queued["status"] == "queued" and queued["tier"] == "bronze"

    job = wait_for_job(api, key, queued["job_id"])
    assert job["status"] == "succeeded", job
    assert job["result_text"].strip()
    assert job["attempts"] == 1
    assert job["usage"]["completion_tokens"] > 0
    assert [a["outcome"] for a in job["attempt_log"]] == ["succeeded"]
    assert job["duration_ms"] > 0
    # The engine's finish reason is kept: "length" (cut off at max_tokens) is flagged.
    assert job["finish_reason"] in {"stop", "length"}
    assert job["truncated"] is (job["finish_reason"] == "length")


@pytest.mark.django_db
def test_a_finished_job_is_not_run_again() -> None:
    job = Job.objects.create(
        request={"messages": [], "max_tokens": 1}, status=JobStatus.SUCCEEDED, result_text="done"
    )
    assert services.job_claim(job_id=str(job.id), backend_for=lambda failed: "engine:x") is None
    job.refresh_from_db()
    assert job.attempts == 0 and job.result_text == "done"


@pytest.mark.django_db
def test_async_requests_need_the_jobs_scope(api: APIClient, make_key: Callable[..., str]) -> None:
    key = make_key("infer")
    response = api.post(
        "/api/v1/infer", {"prompt": "x", "sla": "async"}, format="json", **bearer(key)
    )
    assert response.status_code == 403
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_a_caller_sees_only_its_own_jobs(api: APIClient, make_key: Callable[..., str]) -> None:
    mine, theirs = make_key("jobs", name="mine"), make_key("jobs", name="theirs")
    admin = make_key("jobs", "admin", name="admin")
    from apps.security.selectors import api_key_authenticate

    job = Job.objects.create(
        request={"messages": [], "max_tokens": 1}, submitted_by_key=api_key_authenticate(mine)
    )
    assert api.get(f"/api/v1/jobs/{job.id}", **bearer(mine)).status_code == 200
    assert api.get(f"/api/v1/jobs/{job.id}", **bearer(theirs)).status_code == 404
    assert api.get(f"/api/v1/jobs/{job.id}", **bearer(admin)).status_code == 200
    assert [j["job_id"] for j in api.get("/api/v1/jobs/", **bearer(theirs)).json()] == []
    assert api.get("/api/v1/jobs/not-a-uuid", **bearer(mine)).status_code == 404
