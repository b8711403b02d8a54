"""Bronze jobs: asynchronous expert work and every attempt made at it."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED)


class Job(models.Model):
    """One Bronze request: queued → running → succeeded | failed, with its result and cost.

    The row is the source of truth (Celery keeps no results); a redelivered task finds the row
    finished and does nothing, so a job completes exactly once.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=40, default="completion")
    tier = models.CharField(max_length=10, default="bronze")
    status = models.CharField(
        max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    request = models.JSONField(help_text="messages, max_tokens and sampling options")
    result_text = models.TextField(blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0, help_text="at the Bronze price table")
    submitted_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    submitted_by_key = models.ForeignKey(
        "security.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.kind} job {self.id} ({self.status})"

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000


class JobAttempt(models.Model):
    """One try at a job against one backend; kept for every retry and redelivery."""

    class Outcome(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    backend = models.CharField(max_length=200)
    worker = models.CharField(max_length=200, blank=True, help_text="Celery worker hostname")
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.RUNNING)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ("job", "number")
        constraints = [
            models.UniqueConstraint(fields=("job", "number"), name="job_attempt_number_unique")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.job_id}: {self.outcome}"


class UsageDaily(models.Model):
    """Requests, tokens and cost per API key (or person), tier and day — what the budgets use.

    ``cost_usd`` prices tokens at the tier's price table (GPU-hour price ÷ measured throughput);
    ``reference_cost_usd`` prices the same tokens at the for-pay API the tiers replace.
    """

    day = models.DateField()
    tier = models.CharField(max_length=10)
    key = models.ForeignKey(
        "security.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)
    reference_cost_usd = models.FloatField(default=0.0)

    class Meta:
        ordering = ("-day", "tier")
        constraints = [
            models.UniqueConstraint(
                fields=("day", "tier", "key"),
                name="usage_daily_unique",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.tier} key={self.key_id}: {self.requests} requests"
