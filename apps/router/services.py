"""Writes for the router: answering inference requests and running Bronze jobs.

``InferenceRequest`` and ``Answer`` (from ``apps.router.contracts``) are re-exported here for
other apps, which talk to the router through this module.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.router import chains, costs, engines
from apps.router.chains import StreamEvent
from apps.router.contracts import Answer, InferenceRequest
from apps.router.models import FINISHED_STATUSES, Job, JobAttempt, JobStatus
from apps.router.policy import RouteDecision, Tier, context_window
from apps.security.models import ApiKey
from bodybroker.broadcast import broadcast

logger = logging.getLogger(__name__)
__all__ = ["Answer", "InferenceRequest", "JobRefused", "check_job_fits", "infer", "job_submit"]


def count_cancelled(tier: Tier, reason: str) -> None:
    """Count a generation stopped because nobody waits for its answer (``metrics.CANCELLED``)."""
    chains.count_cancelled(tier, reason)


async def infer(*, request: InferenceRequest, decision: RouteDecision | None = None) -> Answer:
    """Answer on the tier the policy (or ``decision``) picks, walking its fallback chain.

    Always returns an answer for Gold and Silver (the chain's last link cannot fail); raises
    ``EngineHTTPError`` only when an engine rejected the request itself (a 4xx). Bronze requests
    go through :func:`job_submit` instead.
    """
    return await chains.answer(request, decision)


class JobRefused(ValueError):
    """A job that cannot succeed as asked, refused before it is stored; ``field`` names the
    request field to change (each door answers it as a 400 in its own error shape)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message, self.field = message, field


def check_job_fits(*, request: InferenceRequest, tier: Tier = "bronze") -> None:
    """Refuse a job whose prompt and ``max_tokens`` cannot fit the tier's context window.

    Tokens are counted as the routing policy's context guard counts them
    (``InferenceRequest.context_tokens``); the window is the tier's engine's served context
    where ``inference/profiles.toml`` knows it, else the policy's. Raises ``JobRefused``.
    """
    window = context_window(tier, engines.served_context(tier))
    prompt_tokens = request.context_tokens
    if prompt_tokens + request.max_tokens > window:
        raise JobRefused(
            f"the prompt is about {prompt_tokens:,} tokens and max_tokens is "
            f"{request.max_tokens:,}: together more than the {window:,}-token context window "
            f"of {tier.capitalize()}; shorten the prompt or ask for fewer tokens",
            # When the prompt alone fits, fewer tokens asked is the fix.
            field="max_tokens" if prompt_tokens < window else "prompt",
        )


def job_submit(
    *,
    request: InferenceRequest,
    kind: str = "completion",
    submitted_by_user: Any = None,
    submitted_by_key: ApiKey | None = None,
) -> Job:
    """Store a queued Bronze job and enqueue its task once the row is committed.

    The task is sent on ``transaction.on_commit`` so a worker never sees an id that is not yet
    in the database (or that a rolled-back transaction never created). A job that cannot fit
    Bronze's context window is refused first (``check_job_fits`` raises ``JobRefused``), so it
    never fails later with the engine's own error.
    """
    from apps.admin_ops.services import audit_job_submit
    from apps.router.tasks import run_bronze_job

    check_job_fits(request=request)
    user = submitted_by_user if getattr(submitted_by_user, "pk", None) else None
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            request={
                "messages": request.messages,
                "max_tokens": request.max_tokens,
                "temperature": request.temperature,
                "stop": request.stop,
                "response_format": request.response_format,
                "seed": request.seed,
            },
            submitted_by_user=user,
            submitted_by_key=submitted_by_key,
        )
        job_id = str(job.id)
        audit_job_submit(job=job)
        transaction.on_commit(lambda: run_bronze_job.delay(job_id))
    return job


def job_event(job: Job) -> dict[str, Any]:
    """The websocket event for a job's current state (group ``job.<id>``)."""
    return {
        "type": "job.update",
        "job_id": str(job.pk),
        "status": job.status,
        "attempts": job.attempts,
        "result_text": job.result_text,
        "finish_reason": job.finish_reason or None,
        "truncated": job.truncated,
        "error": job.error,
        "usage": {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.completion_tokens},
        "cost_usd": job.cost_usd,
    }


def _announce(job_id: Any) -> None:
    job = Job.objects.get(pk=job_id)
    broadcast(job_group(job.pk), job_event(job))


def job_group(job_id: Any) -> str:
    return f"job.{job_id}"


def job_failures_by_backend(*, job_id: str) -> dict[str, int]:
    """How many attempts failed on each backend (redeliveries continue from these counts)."""
    failures: dict[str, int] = {}
    for backend in JobAttempt.objects.filter(
        job_id=job_id, outcome=JobAttempt.Outcome.FAILED
    ).values_list("backend", flat=True):
        failures[backend] = failures.get(backend, 0) + 1
    return failures


def job_requeued(*, job: Job) -> None:
    """Back to ``queued`` while the retry waits out its backoff; announced to subscribers."""
    Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(status=JobStatus.QUEUED)
    _announce(job.pk)


WORKER_LOST = "worker lost before finishing"
"""The error of an attempt whose worker died; its socket died with it, so the engine stopped."""


class JobBusy(Exception):
    """Another live worker is running this job: this delivery is a duplicate and must wait."""


@transaction.atomic
def job_claim(*, job_id: str, backend_for: Any, worker: str = "") -> tuple[Job, JobAttempt] | None:
    """Claim a job for ``worker``: mark it running and open its next attempt.

    Returns None if the job is finished or unknown. Locks the job row, so two deliveries of the
    same task are decided one after the other. A job still ``running`` is a redelivery: if the
    worker that opened the last attempt is another worker that is still alive (its heartbeat is
    fresh), this delivery is a duplicate and ``JobBusy`` is raised; otherwise that attempt is
    closed as lost and this worker takes over — so a job runs to completion exactly once.
    ``backend_for(failures_by_backend)`` names the backend the new attempt uses (or None when
    every backend is exhausted, which fails the job).
    """
    from apps.admin_ops.selectors import workers_alive

    job = Job.objects.select_for_update().filter(pk=job_id).first()
    if job is None or job.status in FINISHED_STATUSES:
        return None
    now = timezone.now()
    window = settings.BODYBROKER_WORKER_HEARTBEAT_S * 3
    for attempt in job.attempt_rows.filter(outcome=JobAttempt.Outcome.RUNNING):
        elsewhere = attempt.worker and attempt.worker != worker
        if elsewhere and workers_alive(within_s=window).filter(hostname=attempt.worker).exists():
            raise JobBusy(attempt.worker)
        attempt.outcome = JobAttempt.Outcome.FAILED
        attempt.error = WORKER_LOST
        attempt.finished_at = now
        attempt.save(update_fields=["outcome", "error", "finished_at"])
    backend = backend_for(job_failures_by_backend(job_id=job_id))
    if backend is None:
        job_fail(job_id=job.pk, error="every Bronze backend failed; see the attempts")
        return None
    job.status = JobStatus.RUNNING
    job.attempts += 1
    job.started_at = now
    job.save(update_fields=["status", "attempts", "started_at"])
    attempt = JobAttempt.objects.create(
        job=job, number=job.attempts, backend=backend, worker=worker
    )
    _announce(job.pk)
    return job, attempt


def job_attempt_fail(*, attempt: JobAttempt, error: str, latency_ms: float) -> None:
    attempt.outcome = JobAttempt.Outcome.FAILED
    attempt.error = error[:2000]
    attempt.finished_at = timezone.now()
    attempt.latency_ms = latency_ms
    attempt.save(update_fields=["outcome", "error", "finished_at", "latency_ms"])


@transaction.atomic
def job_succeed(
    *,
    job: Job,
    attempt: JobAttempt,
    text: str,
    prompt_tokens: int,
    completion_tokens: int,
    latency_ms: float,
    finish_reason: str = "",
) -> bool:
    """Record the result and its cost; False (nothing written) if another delivery won.

    ``finish_reason`` is the engine's: ``length`` means the answer was cut off at
    ``max_tokens``, which the jobs pages and ``job.update`` events say.

    Emits ``job.update`` to the job's websocket group on commit and counts the usage against
    the submitting key's day, and the answer in the day's Bronze answers.
    """
    now = timezone.now()
    updated = (
        Job.objects.filter(pk=job.pk)
        .exclude(status__in=FINISHED_STATUSES)
        .update(
            status=JobStatus.SUCCEEDED,
            result_text=text,
            finish_reason=finish_reason[:20],
            error="",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=costs.cost_usd("bronze", prompt_tokens, completion_tokens),
            finished_at=now,
        )
    )
    attempt.outcome = JobAttempt.Outcome.SUCCEEDED
    attempt.finished_at = now
    attempt.latency_ms = latency_ms
    attempt.save(update_fields=["outcome", "finished_at", "latency_ms"])
    if updated:
        costs.usage_add(
            key_id=job.submitted_by_key_id,
            tier="bronze",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        costs.answer_add(tier="bronze", source="model", seconds=latency_ms / 1000)
        transaction.on_commit(costs.usage_flush)
        _announce(job.pk)
    return bool(updated)


def job_fail(*, job_id: Any, error: str) -> bool:
    """Mark the job failed for good; False if it had already finished."""
    updated = (
        Job.objects.filter(pk=job_id)
        .exclude(status__in=FINISHED_STATUSES)
        .update(status=JobStatus.FAILED, error=error[:2000], finished_at=timezone.now())
    )
    if updated:
        _announce(job_id)
    return bool(updated)


def jobs_fail_stale(*, older_than_s: float) -> int:
    """Fail queued or running jobs older than ``older_than_s`` (their task message was lost)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    stale = Job.objects.filter(
        status__in=(JobStatus.QUEUED, JobStatus.RUNNING), created_at__lt=cutoff
    )
    return stale.update(
        status=JobStatus.FAILED,
        error="expired: no worker finished it in time",
        finished_at=timezone.now(),
    )


CANCELLED = "cancelled by"
"""How a cancelled job's error begins: ``cancelled by <who>``."""
ATTEMPT_CANCELLED = "stopped: the job was cancelled"


def job_cancel(*, job_id: Any, by: str) -> bool:
    """Cancel a job nobody wants any more: it ends at once as failed with the error
    ``cancelled by <who>`` (a queued one never starts), and a running attempt sees that within
    a second, stops its model call, which stops the engine generating, and closes as
    ``ATTEMPT_CANCELLED``. Announced to subscribers; False if the job had already finished."""
    updated = (
        Job.objects.filter(pk=job_id)
        .exclude(status__in=FINISHED_STATUSES)
        .update(
            status=JobStatus.FAILED, error=f"{CANCELLED} {by}"[:2000], finished_at=timezone.now()
        )
    )
    if updated:
        _announce(job_id)
    return bool(updated)


def infer_stream(
    *, request: InferenceRequest, decision: RouteDecision | None = None
) -> AsyncIterator[StreamEvent]:
    """:func:`infer` as it is written: text events as the model produces them, the last event
    carrying the finished ``Answer``. Closing the stream early (a caller who left) stops the
    engine generating."""
    return chains.stream(request, decision)
