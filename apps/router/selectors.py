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


def bronze_attempts_lost() -> int:
    """Bronze attempts closed because the worker running them died (``services.WORKER_LOST``)."""
    from apps.router.models import JobAttempt
    from apps.router.services import WORKER_LOST

    return JobAttempt.objects.filter(outcome=JobAttempt.Outcome.FAILED, error=WORKER_LOST).count()


def job_with_attempts(*, jobs: QuerySet[Job], job_id: Any) -> Job | None:
    return jobs.prefetch_related("attempt_rows").filter(pk=job_id).first()


def usage_today() -> list[dict[str, Any]]:
    """Requests, tokens and cost per tier today (all keys), beside the for-pay reference."""
    from django.db.models import Sum
    from django.utils import timezone

    from apps.router.models import UsageDaily

    rows = (
        UsageDaily.objects.filter(day=timezone.now().date())
        .values("tier")
        .annotate(
            requests=Sum("requests"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost_usd=Sum("cost_usd"),
            reference_cost_usd=Sum("reference_cost_usd"),
        )
        .order_by("tier")
    )
    return list(rows)


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """A quantile from cumulative histogram buckets (upper bound, count), as Prometheus does."""
    if not buckets or buckets[-1][1] == 0:
        return None
    target = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= target:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            share = (target - lower_count) / width if width else 0.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return None


def tier_snapshot() -> list[dict[str, Any]]:
    """This process's answers per tier and source since it started: count, p50/p95 latency,
    and the response-cache hit rate per tier (from the Prometheus registry)."""
    from apps.router.metrics import CACHE, LATENCY

    buckets: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for metric in LATENCY.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                key = (sample.labels["tier"], sample.labels["source"])
                buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
    lookups: dict[str, dict[str, float]] = {}
    for metric in CACHE.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                tier = sample.labels["tier"]
                lookups.setdefault(tier, {})[sample.labels["result"]] = sample.value
    rows = []
    for (tier, source), series in sorted(buckets.items()):
        series.sort()
        hits = lookups.get(tier, {})
        looked = hits.get("hit", 0) + hits.get("miss", 0)
        p50, p95 = _quantile(series, 0.5), _quantile(series, 0.95)
        rows.append(
            {
                "tier": tier,
                "source": source,
                "requests": int(series[-1][1]),
                "p50_ms": None if p50 is None else round(p50 * 1000, 1),
                "p95_ms": None if p95 is None else round(p95 * 1000, 1),
                "cache_hit_rate": round(hits.get("hit", 0) / looked, 3) if looked else None,
            }
        )
    return rows
