"""Bronze jobs: retries with backoff, the secondary backend, SageMaker async, redelivery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from apps.router import tasks
from apps.router.contracts import InferenceRequest
from apps.router.models import Job, JobStatus
from apps.router.services import job_submit
from tests.router.conftest import tiers

ROOT = Path(__file__).resolve().parents[2]
CLOSED = "http://127.0.0.1:9"


def new_job(text: str = "Outline a story arc.", max_tokens: int = 8) -> Job:
    return Job.objects.create(
        request={"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}
    )


@pytest.fixture
def no_backoff(settings: Any) -> None:
    settings.BODYBROKER_BRONZE_BACKOFF_BASE_S = 0.0
    settings.BODYBROKER_ENGINE_TIMEOUTS = {"connect": 0.5, "first_token": 30, "total": 60}


@pytest.mark.django_db(transaction=True)
def test_a_job_that_reaches_no_backend_fails_keeping_every_attempt(
    settings: Any, no_backoff: None
) -> None:
    settings.BODYBROKER_TIERS = tiers(
        bronze={"urls": [CLOSED], "fallback_urls": ["http://127.0.0.1:10"]}
    )
    job = new_job()
    tasks.run_bronze_job.apply(args=(str(job.id),))
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "every Bronze backend failed" in job.error
    attempts = list(job.attempt_rows.values_list("backend", "outcome"))
    assert (
        attempts
        == [(f"engine:{CLOSED}", "failed")] * 3 + [("engine:http://127.0.0.1:10", "failed")] * 3
    )
    assert job.attempts == 6


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_the_secondary_backend_takes_over_after_the_primary_s_retries(
    settings: Any, no_backoff: None, engines: dict[str, str]
) -> None:
    settings.BODYBROKER_TIERS = tiers(
        bronze={"urls": [CLOSED], "fallback_urls": [engines["gold"]], "fallback_model": "gold"}
    )
    job = new_job()
    tasks.run_bronze_job.apply(args=(str(job.id),))
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result_text
    outcomes = list(job.attempt_rows.values_list("backend", "outcome"))
    assert outcomes[:3] == [(f"engine:{CLOSED}", "failed")] * 3
    assert outcomes[3] == (f"engine:{engines['gold']}", "succeeded")
    assert job.cost_usd > 0


def _moto_async_results(*results: dict[str, Any]) -> None:
    requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/sagemaker/async-endpoint-results",
        json={"results": list(results)},
        timeout=5,
    )


@pytest.mark.django_db(transaction=True)
def test_a_sagemaker_async_endpoint_answers_through_s3(
    settings: Any, no_backoff: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    settings.BODYBROKER_SAGEMAKER_ENDPOINT = "deepseek-v3"
    settings.BODYBROKER_SAGEMAKER_S3_URI = "s3://bronze-jobs/async"
    settings.BODYBROKER_BRONZE_BACKENDS = ["sagemaker"]
    settings.BODYBROKER_BRONZE_TRIES_PER_BACKEND = 2
    answer = {
        "choices": [{"message": {"role": "assistant", "content": "Part one: the sale."}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5},
    }
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bronze-jobs")
        _moto_async_results(
            {"is_failure": True, "data": "ModelError: out of memory"},
            {"data": json.dumps(answer)},
        )
        job = new_job("Outline the sale of a breathing corpse.")
        tasks.run_bronze_job.apply(args=(str(job.id),))
        job.refresh_from_db()
        sent = boto3.client("s3", region_name="us-east-1").get_object(
            Bucket="bronze-jobs", Key=f"async/input/{job.id}/2.json"
        )
        assert json.loads(sent["Body"].read())["messages"][0]["content"].startswith("Outline")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result_text == "Part one: the sale."
    assert (job.prompt_tokens, job.completion_tokens) == (12, 5)
    outcomes = list(job.attempt_rows.values_list("outcome", "error"))
    assert outcomes[0][0] == "failed" and "out of memory" in outcomes[0][1]
    assert outcomes[1] == ("succeeded", "")


def _start_worker(env: dict[str, str], name: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bodybroker",
            "worker",
            "-Q",
            "bronze",
            "--concurrency",
            "1",
            "--hostname",
            f"{name}@localhost",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_a_job_whose_worker_is_killed_is_redelivered_and_finishes_exactly_once(
    settings: Any, engines: dict[str, str], tmp_path: Path
) -> None:
    if not settings.REDIS_URL:
        pytest.skip(
            "redelivery after a killed worker needs the Redis broker (acks_late + "
            "visibility timeout); the embedded filesystem broker cannot redeliver"
        )
    from django.db import connection

    from tests.conftest import _database_url

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bodybroker.settings.test",
        "DATABASE_URL": _database_url(),
        "BODYBROKER_BRONZE_URLS": engines["silver"],
        "BODYBROKER_BRONZE_FALLBACK_URLS": engines["gold"],
        "CELERY_VISIBILITY_TIMEOUT": "3",
        "CELERY_UNACKED_RESTORE_INTERVAL_S": "1",
        "CELERY_UNACKED_RESTORE_THROTTLE": "1",
    }
    assert connection.vendor == "postgresql"
    # The suite's own worker (if a test started it) must not take this job: pause its consumer.
    from bodybroker.celery import app

    suite_worker = [f"test-worker-{os.getpid()}@localhost"]
    app.control.cancel_consumer("bronze", destination=suite_worker, reply=True, timeout=2)
    first = _start_worker(env, "doomed", tmp_path / "doomed.log")
    try:
        job = job_submit(
            request=InferenceRequest(
                messages=[{"role": "user", "content": "Write a long, slow story about fog."}],
                sla="async",
                max_tokens=160,
                temperature=0.7,
            )
        )
        _wait(
            lambda: Job.objects.filter(pk=job.pk, status="running").exists(),
            60,
            "the first worker to start the job",
        )
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies mid-job, message unacknowledged
        first.wait()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    second = _start_worker(env, "rescuer", tmp_path / "rescuer.log")
    try:
        _wait(
            lambda: Job.objects.filter(pk=job.pk, status="succeeded").exists(),
            120,
            "the redelivered job to finish",
        )
        time.sleep(2)  # a duplicate delivery would show up as another attempt by now
    finally:
        second.terminate()
        second.wait(timeout=30)
        app.control.add_consumer("bronze", destination=suite_worker, reply=True, timeout=2)
    job.refresh_from_db()
    outcomes = list(job.attempt_rows.values_list("outcome", "error", "worker"))
    assert outcomes == [
        ("failed", "worker lost before finishing", "doomed@localhost"),
        ("succeeded", "", "rescuer@localhost"),
    ]
    assert job.attempts == 2 and job.result_text
