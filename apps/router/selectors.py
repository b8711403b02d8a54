"""Reads for the router: jobs a caller may see."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.router.models import Job
from apps.security.models import ApiKey


def jobs_visible_to(*, user: Any, key: ApiKey | None, sees_all: bool) -> QuerySet[Job]:
    """Jobs this caller submitted (by key or as a person); every job for admins."""
    jobs = Job.objects.select_related("submitted_by_key", "submitted_by_user")
    if sees_all:
        return jobs
    if key is not None:
        return jobs.filter(submitted_by_key=key)
    if getattr(user, "pk", None):
        return jobs.filter(submitted_by_user=user)
    return jobs.none()


def job_with_attempts(*, jobs: QuerySet[Job], job_id: Any) -> Job | None:
    return jobs.prefetch_related("attempt_rows").filter(pk=job_id).first()
