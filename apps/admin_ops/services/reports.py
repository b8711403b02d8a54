"""Writes for admin reports: the weekly operations report, written by a Bronze job."""

from __future__ import annotations

import json
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from apps.admin_ops.actors import Actor
from apps.admin_ops.models import AdminReport
from apps.admin_ops.services.audit import audit_record

# --- admin reports --------------------------------------------------------------------------


def admin_report_request(*, actor: Actor, days: int = 7) -> AdminReport:
    """Snapshot the week's metrics and queue a Bronze job to write the operations report.

    Locks nothing. The job is enqueued on commit by ``job_submit``; emits an
    ``admin_report.request`` audit event.
    """
    from apps.admin_ops.selectors import operations_metrics
    from apps.router.services import InferenceRequest, job_submit

    end = timezone.now()
    start = end - timedelta(days=days)
    metrics = operations_metrics(since=start, until=end)
    prompt = (
        "You write the weekly operations report of Body Broker, the AI backend of a horror "
        "game. From these metrics, write a short report: what happened, what went wrong, "
        "what to watch next week.\n\n" + json.dumps(metrics, indent=1, default=str)
    )
    with transaction.atomic():
        job = job_submit(
            request=InferenceRequest(
                messages=[{"role": "user", "content": prompt}], sla="async", max_tokens=400
            ),
            kind="admin_report",
            submitted_by_user=actor.person,
            submitted_by_key=actor.key,
        )
        report = AdminReport.objects.create(
            job=job,
            period_start=start,
            period_end=end,
            metrics=json.loads(json.dumps(metrics, default=str)),
            requested_by=actor.label[:200],
        )
        audit_record(
            action="admin_report.request",
            target=f"admin_report:{report.id}",
            actor=actor,
            after={"job_id": str(job.id), "days": days},
        )
    return report
