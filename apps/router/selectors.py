"""Reads for the router: jobs a caller may see."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, QuerySet

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


def jobs_created(*, since: datetime, until: datetime | None = None) -> QuerySet[Job]:
    """Jobs submitted from ``since`` up to (not including) ``until``, or up to now when
    ``until`` is None: what operations' statistics and reports count."""
    jobs = Job.objects.filter(created_at__gte=since)
    if until is not None:
        jobs = jobs.filter(created_at__lt=until)
    return jobs


JOB_FILTERS = ("status", "tier", "kind", "submitter")


def jobs_filtered(*, jobs: QuerySet[Job], filters: dict[str, str]) -> QuerySet[Job]:
    """``jobs`` narrowed by status, tier, kind and submitter (a username, or ``key <name>``
    as ``Job.submitter`` writes it); empty values filter nothing."""
    narrowed = jobs
    for name in ("status", "tier", "kind"):
        if filters.get(name):
            narrowed = narrowed.filter(**{name: filters[name]})
    submitter = filters.get("submitter", "")
    if submitter.startswith("key "):
        narrowed = narrowed.filter(submitted_by_key__name=submitter.removeprefix("key "))
    elif submitter:
        narrowed = narrowed.filter(submitted_by_user__username=submitter)
    return narrowed


def job_filter_choices(*, jobs: QuerySet[Job]) -> dict[str, list[str]]:
    """The values each jobs filter can take among ``jobs`` (what the filter form offers)."""
    from apps.router.models import JobStatus

    users = jobs.exclude(submitted_by_user=None).values_list(
        "submitted_by_user__username", flat=True
    )
    keys = jobs.exclude(submitted_by_key=None).values_list("submitted_by_key__name", flat=True)
    return {
        "status": list(JobStatus.values),
        "tier": sorted(set(jobs.values_list("tier", flat=True).order_by())),
        "kind": sorted(set(jobs.values_list("kind", flat=True).order_by())),
        "submitter": sorted(set(users.order_by()))
        + sorted(f"key {n}" for n in set(keys.order_by())),
    }


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


TIER_ORDER = ("gold", "silver", "bronze")


def tiers_today() -> list[dict[str, Any]]:
    """Each tier's answers today, from the database, so every process and restart counts:
    answers by source, p50/p95 latency, the share answered from the response cache, and the
    generated answers' tokens and cost (``UsageDaily``) beside the for-pay reference."""
    from django.utils import timezone

    from apps.router.metrics import LATENCY_BOUNDS_S
    from apps.router.models import AnswersDaily

    today = timezone.now().date()
    rows: dict[str, dict[str, Any]] = {}

    def row(tier: str) -> dict[str, Any]:
        return rows.setdefault(
            tier,
            {
                "tier": tier,
                "answers": 0,
                "by_source": {},
                "counts": [0] * (len(LATENCY_BOUNDS_S) + 1),
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cost_usd": 0.0,
                "reference_cost_usd": 0.0,
            },
        )

    for answers in AnswersDaily.objects.filter(day=today):
        found = row(answers.tier)
        found["answers"] += answers.requests
        found["by_source"][answers.source] = answers.requests
        for index, count in enumerate(answers.latency_counts[: len(found["counts"])]):
            found["counts"][index] += count
    for usage in usage_today():
        found = row(usage["tier"])
        for name in ("prompt_tokens", "completion_tokens", "cost_usd", "reference_cost_usd"):
            found[name] = usage[name] or 0
    bounds = [*LATENCY_BOUNDS_S, float("inf")]
    for found in rows.values():
        cumulative, total = [], 0.0
        for bound, count in zip(bounds, found.pop("counts"), strict=True):
            total += count
            cumulative.append((float(bound), total))
        p50, p95 = _quantile(cumulative, 0.5), _quantile(cumulative, 0.95)
        found["p50_ms"] = None if p50 is None else p50 * 1000
        found["p95_ms"] = None if p95 is None else p95 * 1000
        found["cache_share"] = (
            found["by_source"].get("cache", 0) / found["answers"] if found["answers"] else None
        )
        found["by_source"] = sorted(found["by_source"].items(), key=lambda item: -item[1])
    order = {tier: index for index, tier in enumerate(TIER_ORDER)}
    return sorted(rows.values(), key=lambda found: (order.get(found["tier"], 99), found["tier"]))


def job_cancelled(*, job_id: Any) -> bool:
    """Whether the job was cancelled (``services.job_cancel``)."""
    from apps.router.models import JobStatus
    from apps.router.services import CANCELLED

    return Job.objects.filter(
        pk=job_id, status=JobStatus.FAILED, error__startswith=CANCELLED
    ).exists()


def job_queue_place(*, job: Job) -> dict[str, int]:
    """Where an unfinished job stands in its tier's queue: the unfinished jobs of that tier
    submitted before it (``ahead``), and how many of those are running now."""
    from apps.router.models import JobStatus

    ahead = Job.objects.filter(
        tier=job.tier,
        status__in=(JobStatus.QUEUED, JobStatus.RUNNING),
        created_at__lt=job.created_at,
    )
    counts = {
        row["status"]: row["n"] for row in ahead.order_by().values("status").annotate(n=Count("pk"))
    }
    return {
        "ahead": sum(counts.values()),
        "running": counts.get(JobStatus.RUNNING, 0),
    }


def answers_in_flight(*, tier: str) -> int:
    """Answers this process is waiting on from ``tier``'s engines now (call it on the event
    loop that serves them)."""
    from apps.router.pools import pools

    pool = pools().primary.get(tier)
    return pool.in_flight() if pool is not None else 0


def bronze_jobs_sharing(*, tier: str) -> int:
    """Bronze jobs running now on ``tier``'s engines (on the CPU default Bronze runs on
    Silver's engine, so a Silver answer waits behind them)."""
    from django.conf import settings

    from apps.router.models import JobStatus

    tiers = settings.BODYBROKER_TIERS
    if tier == "bronze" or not set(tiers[tier]["urls"]) & set(tiers["bronze"]["urls"]):
        return 0
    return Job.objects.filter(tier="bronze", status=JobStatus.RUNNING).count()
