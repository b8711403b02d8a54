"""Reads for operations: live workers, job statistics, the approval queue, the audit log and
the weekly report's metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, Prefetch, QuerySet, Sum
from django.utils import timezone

from apps.admin_ops.kinds import KINDS
from apps.admin_ops.models import (
    OPEN_STATUSES,
    AdminReport,
    AuditEvent,
    ChangeRequest,
    ChangeRequestDecision,
    ChangeRequestStatus,
    WorkerHeartbeat,
)
from apps.router.selectors import jobs_created


def workers_alive(*, within_s: float) -> QuerySet[WorkerHeartbeat]:
    return WorkerHeartbeat.objects.filter(
        last_seen__gte=timezone.now() - timedelta(seconds=within_s)
    )


def job_stats(*, since_hours: int = 24) -> dict[str, Any]:
    """Counts by status and token/latency totals of Bronze jobs in the last ``since_hours``."""
    recent = jobs_created(since=timezone.now() - timedelta(hours=since_hours))
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


# --- change requests ------------------------------------------------------------------------


def change_requests(
    *, status: str | None = None, kind: str | None = None
) -> QuerySet[ChangeRequest]:
    """Change requests, oldest first, with their authors loaded (for lists and the API)."""
    requests = ChangeRequest.objects.select_related(
        "author_user", "author_key", "executed_on_behalf_of"
    ).annotate(
        decision_count=Count("decisions"),
    )
    if status:
        requests = requests.filter(status=status)
    if kind:
        requests = requests.filter(kind=kind)
    return requests.order_by("created_at")


def approval_queue() -> QuerySet[ChangeRequest]:
    """What is waiting for a decision or running: pending and approved requests, oldest first."""
    return change_requests().filter(status__in=(*OPEN_STATUSES, ChangeRequestStatus.EXECUTING))


def change_requests_waiting_on(*, kind: str, target: str) -> QuerySet[ChangeRequest]:
    """The open or running requests of ``kind`` against ``target``, oldest first (shown where
    the target is edited, so a second request is not opened unknowingly)."""
    return approval_queue().filter(kind=kind, target=target)


def approval_counts_by_kind() -> list[dict[str, Any]]:
    """``[{kind, pending, approved}]`` for every declared kind, in declaration order."""
    rows = (
        ChangeRequest.objects.filter(status__in=OPEN_STATUSES)
        .values("kind", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[str, dict[str, Any]] = {
        name: {"kind": name, "pending": 0, "approved": 0} for name in KINDS
    }
    for row in rows:
        entry = counts.setdefault(row["kind"], {"kind": row["kind"], "pending": 0, "approved": 0})
        entry[row["status"]] = row["n"]
    return list(counts.values())


def change_request_with_history(*, change_request_id: Any) -> ChangeRequest | None:
    """One change request with its decisions (and their people) loaded."""
    return (
        ChangeRequest.objects.select_related("author_user", "author_key", "executed_on_behalf_of")
        .prefetch_related(
            Prefetch(
                "decisions",
                queryset=ChangeRequestDecision.objects.select_related("user", "via_key"),
            )
        )
        .filter(pk=change_request_id)
        .first()
    )


def change_request_audit_trail(*, change_request_id: Any) -> QuerySet[AuditEvent]:
    """Audit events about one change request and its target's effect, oldest first."""
    return AuditEvent.objects.filter(target=f"change_request:{change_request_id}").order_by(
        "at", "id"
    )


# --- audit ----------------------------------------------------------------------------------


AUDIT_FILTERS = ("action", "actor", "target", "since", "until", "request_id")


def audit_events(
    *,
    action: str = "",
    actor: str = "",
    target: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    request_id: str = "",
) -> QuerySet[AuditEvent]:
    """Audit events newest first. ``action`` matches a prefix (``change_request.``), ``actor``
    and ``target`` a substring, ``since``/``until`` bound the time."""
    events = AuditEvent.objects.all()
    if action:
        events = events.filter(action__startswith=action)
    if actor:
        events = events.filter(actor_label__icontains=actor)
    if target:
        events = events.filter(target__icontains=target)
    if since:
        events = events.filter(at__gte=since)
    if until:
        events = events.filter(at__lt=until)
    if request_id:
        events = events.filter(request_id=request_id)
    return events.order_by("-at", "-id")


AUDIT_CSV_COLUMNS = (
    "id",
    "at",
    "actor_type",
    "actor_label",
    "actor_tier",
    "action",
    "target",
    "summary",
    "before",
    "after",
    "request_id",
)


def audit_csv_rows(events: QuerySet[AuditEvent]) -> Iterator[list[str]]:
    """The header, then one row per event (JSON for before/after), streamed in chunks."""
    yield list(AUDIT_CSV_COLUMNS)
    for event in events.iterator(chunk_size=500):
        yield [
            str(event.pk),
            event.at.isoformat(),
            event.actor_type,
            event.actor_label,
            event.actor_tier,
            event.action,
            event.target,
            event.summary,
            "" if event.before is None else json.dumps(event.before, sort_keys=True),
            "" if event.after is None else json.dumps(event.after, sort_keys=True),
            event.request_id,
        ]


# --- reports --------------------------------------------------------------------------------


def operations_metrics(*, since: datetime, until: datetime) -> dict[str, Any]:
    """What the weekly report is written from: jobs by kind and status, tokens, change
    requests by kind and outcome, audit activity, and the workers seen."""
    jobs = jobs_created(since=since, until=until)
    job_rows = jobs.values("kind", "status").annotate(n=Count("id")).order_by("kind", "status")
    tokens = jobs.aggregate(
        prompt_tokens=Sum("prompt_tokens"), completion_tokens=Sum("completion_tokens")
    )
    requests = ChangeRequest.objects.filter(created_at__gte=since, created_at__lt=until)
    request_rows = (
        requests.values("kind", "status").annotate(n=Count("id")).order_by("kind", "status")
    )
    audit_rows = (
        AuditEvent.objects.filter(at__gte=since, at__lt=until)
        .values("action")
        .annotate(n=Count("id"))
        .order_by("action")
    )
    return {
        "period": {"start": since.isoformat(), "end": until.isoformat()},
        "jobs": [dict(row) for row in job_rows],
        "job_tokens": {k: v or 0 for k, v in tokens.items()},
        "change_requests": [dict(row) for row in request_rows],
        "audit_actions": [dict(row) for row in audit_rows],
        "workers": list(
            WorkerHeartbeat.objects.filter(last_seen__gte=since).values_list("hostname", flat=True)
        ),
    }


def admin_report(*, report_id: Any) -> AdminReport | None:
    return AdminReport.objects.select_related("job").filter(pk=report_id).first()


def admin_report_markdown(report: AdminReport) -> str:
    """The report as a Markdown document: the narrative (once the job is done) and the numbers."""
    job = report.job
    lines = [
        f"# Body Broker operations report, {report.period_start:%Y-%m-%d} to "
        f"{report.period_end:%Y-%m-%d}",
        "",
        f"Requested by {report.requested_by} at {report.created_at:%Y-%m-%d %H:%M} UTC; "
        f"Bronze job `{job.id}` is {job.status}.",
        "",
        "## Narrative",
        "",
        job.result_text.strip() if job.result_text else f"_(not written yet: job {job.status})_",
        "",
        "## Jobs",
        "",
        "| kind | status | count |",
        "|---|---|---|",
    ]
    metrics = report.metrics
    lines += [f"| {r['kind']} | {r['status']} | {r['n']} |" for r in metrics.get("jobs", [])]
    tokens = metrics.get("job_tokens", {})
    lines += [
        "",
        f"Tokens: {tokens.get('prompt_tokens', 0)} prompt, "
        f"{tokens.get('completion_tokens', 0)} completion.",
        "",
        "## Change requests",
        "",
        "| kind | status | count |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r['kind']} | {r['status']} | {r['n']} |" for r in metrics.get("change_requests", [])
    ]
    lines += ["", "## Audit activity", "", "| action | count |", "|---|---|"]
    lines += [f"| {r['action']} | {r['n']} |" for r in metrics.get("audit_actions", [])]
    workers = ", ".join(metrics.get("workers", [])) or "none"
    lines += ["", f"Workers seen: {workers}.", ""]
    return "\n".join(lines)
