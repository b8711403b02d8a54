"""Celery tasks of the router: running Bronze jobs and expiring the ones nobody finished."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from asgiref.sync import async_to_sync
from celery import shared_task
from django.conf import settings

from apps.router import services
from apps.router.engines import engine_timeouts, tier_endpoint
from inference.client import Completion, EngineClient
from inference.errors import EngineError

logger = logging.getLogger(__name__)

MAX_RETRIES = 3
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 60.0


def backoff_delay(retries: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base·2^retries)]."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**retries))  # noqa: S311


async def _complete(url: str, model: str, request: dict[str, Any]) -> Completion:
    # A worker runs each job on a fresh event loop, so it owns a client for the job's duration.
    client = EngineClient(url, model, timeouts=engine_timeouts())
    try:
        return await client.chat(
            request["messages"],
            max_tokens=request["max_tokens"],
            temperature=request.get("temperature"),
            stop=request.get("stop"),
        )
    finally:
        await client.aclose()


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=int(settings.BODYBROKER_BRONZE_TIMEOUT_S),
    time_limit=int(settings.BODYBROKER_BRONZE_TIMEOUT_S) + 30,
)
def run_bronze_job(self: Any, job_id: str) -> None:
    """Run one Bronze job to completion. Idempotent: a finished job is left alone."""
    job = services.job_claim(job_id=job_id)
    if job is None:
        logger.info("bronze job %s is finished or unknown; nothing to do", job_id)
        return
    url, model = tier_endpoint("bronze")
    attempt = services.job_attempt_start(job=job, backend=url)
    started = time.perf_counter()
    try:
        completion = async_to_sync(_complete)(url, model, job.request)
    except EngineError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        services.job_attempt_fail(
            attempt=attempt, error=f"{type(exc).__name__}: {exc}", latency_ms=elapsed
        )
        if getattr(exc, "retryable", True) and self.request.retries < MAX_RETRIES:
            raise self.retry(exc=exc, countdown=backoff_delay(self.request.retries)) from exc
        services.job_fail(job_id=job.pk, error=f"{type(exc).__name__}: {exc}")
        return
    services.job_succeed(
        job=job,
        attempt=attempt,
        text=completion.text,
        prompt_tokens=completion.prompt_tokens or 0,
        completion_tokens=completion.completion_tokens or 0,
        latency_ms=(time.perf_counter() - started) * 1000,
    )


@shared_task
def fail_stale_jobs() -> int:
    """Fail jobs older than three Bronze timeouts: their task message is gone."""
    return services.jobs_fail_stale(older_than_s=settings.BODYBROKER_BRONZE_TIMEOUT_S * 3)
