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
    finish_reason = models.CharField(
        max_length=20, blank=True, help_text="why the answer ended: stop, or length at max_tokens"
    )
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

    @property
    def truncated(self) -> bool:
        """The answer stopped because it reached ``max_tokens``, not because it was done."""
        return self.finish_reason == "length"

    @property
    def messages(self) -> list[dict[str, str]]:
        """The request's messages as role and text (content parts joined)."""
        found = []
        for message in self.request.get("messages") or ():
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(
                    str(part.get("text", "")) for part in content if isinstance(part, dict)
                )
            found.append({"role": str(message.get("role", "")), "content": str(content or "")})
        return found

    @property
    def prompt(self) -> str:
        """What was asked: the last user message (a system prompt only frames it)."""
        asked = [m["content"] for m in self.messages if m["role"] == "user"]
        return asked[-1] if asked else ""

    @property
    def submitter(self) -> str:
        """Who asked: the person's username, else the API key's name."""
        if self.submitted_by_user is not None:
            return str(self.submitted_by_user.get_username())
        if self.submitted_by_key is not None:
            return f"key {self.submitted_by_key.name}"
        return ""


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


class AnswersDaily(models.Model):
    """Answers per tier, source (model, fallback_model, cache, template, policy) and day, with
    their latency histogram: what the dashboards read, so every process's answers (web,
    worker) and every restart count alike.

    ``latency_counts[i]`` counts answers that took at most ``metrics.LATENCY_BOUNDS_S[i]`` s and
    more than the bound before it; the last count is everything slower than the last bound.
    """

    day = models.DateField()
    tier = models.CharField(max_length=10)
    source = models.CharField(max_length=20)
    requests = models.PositiveIntegerField(default=0)
    latency_counts = models.JSONField(default=list)

    class Meta:
        ordering = ("-day", "tier", "source")
        constraints = [
            models.UniqueConstraint(fields=("day", "tier", "source"), name="answers_daily_unique")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.tier}/{self.source}: {self.requests} answers"
