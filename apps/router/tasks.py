"""Celery tasks of the router: running Bronze jobs and expiring the ones nobody finished."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django import db
from django.conf import settings

from apps.router import selectors, services
from apps.router.bronze import JobCancelled, backends
from inference.errors import EngineError

logger = logging.getLogger(__name__)


def backoff_delay(tries: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(60 s, base·2^tries)]."""
    ceiling = min(60.0, settings.BODYBROKER_BRONZE_BACKOFF_BASE_S * 2**tries)
    return random.uniform(0, ceiling)  # noqa: S311 — jitter, not cryptography


def _cancelled(job_id: str) -> Callable[[], bool]:
    """Whether the job was cancelled, asked by a running attempt from a helper thread."""

    def check() -> bool:
        try:
            return selectors.job_cancelled(job_id=job_id)
        finally:
            db.connection.close()  # the helper thread's own connection, not the task's

    return check


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # the job's attempt rows bound the retries, per backend
    soft_time_limit=int(settings.BODYBROKER_BRONZE_TIMEOUT_S),
    time_limit=int(settings.BODYBROKER_BRONZE_TIMEOUT_S) + 30,
)
def run_bronze_job(self: Any, job_id: str) -> None:
    """Run one Bronze job to completion. Idempotent: a finished job is left alone.

    Each backend gets ``BODYBROKER_BRONZE_TRIES_PER_BACKEND`` tries (counted from the job's
    attempt rows, so a redelivered task continues where the lost worker stopped), with
    exponential backoff and jitter between tries, before the next backend takes over.
    """
    chain = backends()
    tries = settings.BODYBROKER_BRONZE_TRIES_PER_BACKEND

    def backend_for(failed: dict[str, int]) -> str | None:
        return next((b.label for b in chain if failed.get(b.label, 0) < tries), None)

    try:
        claimed = services.job_claim(
            job_id=job_id, backend_for=backend_for, worker=self.request.hostname or ""
        )
    except services.JobBusy as busy:
        logger.info("bronze job %s is running on %s; checking again later", job_id, busy)
        raise self.retry(countdown=settings.BODYBROKER_WORKER_HEARTBEAT_S * 3) from None
    if claimed is None:
        logger.info("bronze job %s is finished or unknown; nothing to do", job_id)
        return
    job, attempt = claimed
    backend = next(b for b in chain if b.label == attempt.backend)
    failed = services.job_failures_by_backend(job_id=job_id)
    started = time.perf_counter()
    try:
        result = backend.complete(
            job_id=str(job.pk),
            attempt=attempt.number,
            request=job.request,
            stop_when=_cancelled(job_id),
        )
    except JobCancelled:
        services.job_attempt_fail(
            attempt=attempt,
            error=services.ATTEMPT_CANCELLED,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        return
    except EngineError as exc:
        error = f"{type(exc).__name__}: {exc}"
        services.job_attempt_fail(
            attempt=attempt, error=error, latency_ms=(time.perf_counter() - started) * 1000
        )
        if not exc.retryable:
            services.job_fail(job_id=job.pk, error=error)
            return
        tried_here = failed.get(backend.label, 0) + 1
        more_here = tried_here < tries
        more_elsewhere = chain.index(backend) < len(chain) - 1
        if not (more_here or more_elsewhere):
            services.job_fail(job_id=job.pk, error=f"every Bronze backend failed; last: {error}")
            return
        services.job_requeued(job=job)
        delay = backoff_delay(tried_here - 1) if more_here else 0.0
        raise self.retry(exc=exc, countdown=delay) from exc
    services.job_succeed(
        job=job,
        attempt=attempt,
        text=result.text,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        latency_ms=(time.perf_counter() - started) * 1000,
        finish_reason=result.finish_reason,
    )


@shared_task
def fail_stale_jobs() -> int:
    """Fail jobs older than three Bronze timeouts: their task message is gone."""
    return services.jobs_fail_stale(older_than_s=settings.BODYBROKER_BRONZE_TIMEOUT_S * 3)
