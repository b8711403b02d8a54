"""Writes for the router: answering inference requests and running Bronze jobs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.router.engines import tier_client
from apps.router.models import FINISHED_STATUSES, Job, JobAttempt, JobStatus
from apps.router.policy import RouteDecision, Sla, route
from apps.security.models import ApiKey

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """What a caller asks of the models, whichever door it came through."""

    messages: list[dict[str, Any]]
    sla: Sla = "interactive"
    max_tokens: int = 256
    temperature: float | None = None
    stop: list[str] | None = None
    needs_tools: bool = False
    requires_expert_reasoning: bool = False

    def decide(self) -> RouteDecision:
        return route(
            sla=self.sla,
            max_tokens=self.max_tokens,
            needs_tools=self.needs_tools,
            requires_expert_reasoning=self.requires_expert_reasoning,
        )


@dataclass(frozen=True, slots=True)
class InferenceAnswer:
    """A synchronous answer and where it came from."""

    text: str
    tier: str
    source: str
    model: str
    route_reason: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    extra: dict[str, Any] = field(default_factory=dict)


async def infer(*, request: InferenceRequest, decision: RouteDecision) -> InferenceAnswer:
    """Ask the Gold or Silver engine the routing decision names and return its answer.

    Raises ``inference.client.EngineError`` when the engine cannot answer. Bronze requests go
    through :func:`job_submit` instead.
    """
    client = tier_client(decision.tier)
    completion = await client.chat(
        request.messages,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        stop=request.stop,
    )
    return InferenceAnswer(
        text=completion.text,
        tier=decision.tier,
        source="model",
        model=completion.model,
        route_reason=decision.reason,
        finish_reason=completion.finish_reason,
        prompt_tokens=completion.prompt_tokens or 0,
        completion_tokens=completion.completion_tokens or 0,
        latency_ms=completion.latency_ms,
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
    in the database (or that a rolled-back transaction never created).
    """
    from apps.router.tasks import run_bronze_job

    user = submitted_by_user if getattr(submitted_by_user, "pk", None) else None
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            request={
                "messages": request.messages,
                "max_tokens": request.max_tokens,
                "temperature": request.temperature,
                "stop": request.stop,
            },
            submitted_by_user=user,
            submitted_by_key=submitted_by_key,
        )
        job_id = str(job.id)
        transaction.on_commit(lambda: run_bronze_job.delay(job_id))
    return job


def job_claim(*, job_id: str) -> Job | None:
    """Mark the job running and count the attempt; None if it is finished or unknown.

    A conditional UPDATE is the claim, so two deliveries of the same task cannot both start a
    finished job. A job still ``running`` is claimable: that is a redelivery after a lost worker,
    and the attempt that worker left open is closed as lost.
    """
    now = timezone.now()
    claimed = Job.objects.filter(
        pk=job_id, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
    ).update(status=JobStatus.RUNNING, attempts=F("attempts") + 1, started_at=now)
    if not claimed:
        return None
    JobAttempt.objects.filter(job_id=job_id, outcome=JobAttempt.Outcome.RUNNING).update(
        outcome=JobAttempt.Outcome.FAILED, error="worker lost before finishing", finished_at=now
    )
    return Job.objects.get(pk=job_id)


def job_attempt_start(*, job: Job, backend: str) -> JobAttempt:
    return JobAttempt.objects.create(job=job, number=job.attempts, backend=backend)


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
) -> bool:
    """Record the result; False (and nothing written) if another delivery finished it first."""
    now = timezone.now()
    updated = (
        Job.objects.filter(pk=job.pk)
        .exclude(status__in=FINISHED_STATUSES)
        .update(
            status=JobStatus.SUCCEEDED,
            result_text=text,
            error="",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finished_at=now,
        )
    )
    attempt.outcome = JobAttempt.Outcome.SUCCEEDED
    attempt.finished_at = now
    attempt.latency_ms = latency_ms
    attempt.save(update_fields=["outcome", "finished_at", "latency_ms"])
    return bool(updated)


def job_fail(*, job_id: Any, error: str) -> bool:
    """Mark the job failed for good; False if it had already finished."""
    updated = (
        Job.objects.filter(pk=job_id)
        .exclude(status__in=FINISHED_STATUSES)
        .update(status=JobStatus.FAILED, error=error[:2000], finished_at=timezone.now())
    )
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
