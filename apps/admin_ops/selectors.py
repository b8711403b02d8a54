"""Reads for operations: live workers and job statistics for the dashboards."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Avg, Count, QuerySet, Sum
from django.utils import timezone

from apps.admin_ops.models import WorkerHeartbeat
from apps.router.models import Job


def workers_alive(*, within_s: float) -> QuerySet[WorkerHeartbeat]:
    return WorkerHeartbeat.objects.filter(
        last_seen__gte=timezone.now() - timedelta(seconds=within_s)
    )


def job_stats(*, since_hours: int = 24) -> dict[str, Any]:
    """Counts by status and token/latency totals of Bronze jobs in the last ``since_hours``."""
    recent = Job.objects.filter(created_at__gte=timezone.now() - timedelta(hours=since_hours))
    by_status = dict(recent.values_list("status").annotate(n=Count("id")).order_by())
    totals = recent.aggregate(
        prompt_tokens=Sum("prompt_tokens"), completion_tokens=Sum("completion_tokens")
    )
    finished = recent.filter(started_at__isnull=False, finished_at__isnull=False)
    durations = [job.duration_ms for job in finished.only("started_at", "finished_at")[:500]]
    known = [d for d in durations if d is not None]
    return {
        "by_status": by_status,
        "total": sum(by_status.values()),
        "prompt_tokens": totals["prompt_tokens"] or 0,
        "completion_tokens": totals["completion_tokens"] or 0,
        "mean_duration_ms": round(sum(known) / len(known), 1) if known else None,
        "mean_attempts": recent.aggregate(a=Avg("attempts"))["a"],
    }
