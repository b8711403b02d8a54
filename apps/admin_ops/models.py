"""Operational state: worker liveness, change requests and their decisions, the audit log,
and weekly admin reports."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models


class WorkerHeartbeat(models.Model):
    """The last time each Celery worker said it was alive, which queues it consumes, and how
    many tasks it was running then."""

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    active = models.PositiveIntegerField(default=0)
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ("-last_seen",)

    def __str__(self) -> str:
        return f"{self.hostname} @ {self.last_seen:%H:%M:%S}"


class ChangeRequestStatus(models.TextChoices):
    PENDING = "pending"  # waiting for approvals
    APPROVED = "approved"  # enough approvals on the current revision; execution queued
    EXECUTING = "executing"  # claimed by one execution task
    EXECUTED = "executed"
    FAILED = "failed"  # the executor ran (or could not run) and reported an error
    REJECTED = "rejected"
    EXPIRED = "expired"


OPEN_STATUSES = (ChangeRequestStatus.PENDING, ChangeRequestStatus.APPROVED)
CLOSED_STATUSES = (
    ChangeRequestStatus.EXECUTED,
    ChangeRequestStatus.FAILED,
    ChangeRequestStatus.REJECTED,
    ChangeRequestStatus.EXPIRED,
)


class ChangeRequest(models.Model):
    """A proposed change to something outside the application's own drafts, held until approved.

    ``base_revision`` is the content hash of the target as it was when the diff was made;
    ``revision`` hashes that together with the kind, target and payload, and every approval
    records the revision it approved. Amending the payload or refreshing against a changed
    target gives a new revision, so earlier approvals stop counting (they stay in the history).
    Execution runs at most once: a task claims the row with a conditional UPDATE from
    ``approved`` to ``executing``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=40, db_index=True)
    target = models.CharField(max_length=200)
    payload = models.JSONField()
    diff = models.TextField(blank=True, help_text="unified diff of the target's state")
    base_revision = models.CharField(max_length=64, help_text="hash of the target's state")
    revision = models.CharField(max_length=64, help_text="hash of kind, target, payload, base")
    reason = models.TextField()
    status = models.CharField(
        max_length=10,
        choices=ChangeRequestStatus.choices,
        default=ChangeRequestStatus.PENDING,
        db_index=True,
    )
    required_approvals = models.PositiveSmallIntegerField(default=1)
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    author_key = models.ForeignKey(
        "security.ApiKey", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    author_tier = models.CharField(max_length=10, blank=True)
    author_label = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField(db_index=True)
    # The execution record.
    approved_at = models.DateTimeField(null=True, blank=True)
    executed_on_behalf_of = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the approver whose approval completed the quorum",
    )
    execution_started_at = models.DateTimeField(null=True, blank=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    execution_runs = models.PositiveSmallIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ("created_at",)
        indexes = [models.Index(fields=("status", "created_at"), name="cr_status_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.target} ({self.status})"

    @property
    def short_id(self) -> str:
        return str(self.id)[:8]


class Decision(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"


class ChangeRequestDecision(models.Model):
    """One person's approval or rejection of a change request at one revision, with a comment."""

    change_request = models.ForeignKey(
        ChangeRequest, on_delete=models.PROTECT, related_name="decisions"
    )
    decision = models.CharField(max_length=7, choices=Decision.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    via_key = models.ForeignKey(
        "security.ApiKey", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    revision = models.CharField(max_length=64)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created_at", "id")
        constraints = [
            models.UniqueConstraint(
                fields=("change_request", "user", "revision"), name="cr_decision_once_per_revision"
            )
        ]

    def __str__(self) -> str:
        return f"{self.decision} by {self.user_id} on {self.change_request_id}"


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Audit events are append-only: the application has no way to change or remove them."""

    def update(self, **kwargs: Any) -> int:
        raise PermissionError("audit events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit events are append-only")


class AuditEvent(models.Model):
    """Something that happened and who did it: a login, a key, a change request, a publish, a job,
    an MCP tool call that writes. Append-only: no update or delete path exists in the
    application, and the database refuses UPDATE (and, on PostgreSQL, DELETE) of these rows.

    The actor is kept as a label as well as ids, and the ids carry no database constraint, so
    the record outlives the user or key it names.
    """

    class ActorType(models.TextChoices):
        USER = "user"
        API_KEY = "api_key"
        TIER = "tier"
        SYSTEM = "system"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor_label = models.CharField(max_length=200, db_index=True)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_key = models.ForeignKey(
        "security.ApiKey",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_tier = models.CharField(max_length=10, blank=True)
    action = models.CharField(max_length=60, db_index=True)
    target = models.CharField(max_length=200, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    summary = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ("-at", "-id")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.target}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise PermissionError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit events are append-only")


class AdminReport(models.Model):
    """A weekly operations report: the metrics snapshot taken when it was asked for, and the
    Bronze job that writes the narrative. Downloadable as Markdown once the job finishes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.OneToOneField("router.Job", on_delete=models.PROTECT, related_name="+")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    metrics = models.JSONField()
    requested_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"admin report {self.period_start:%Y-%m-%d}–{self.period_end:%Y-%m-%d}"
