"""Operator pages: the overview, dashboards, the approvals queue and detail, the audit log."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError

from apps.admin_ops import selectors, services
from apps.admin_ops.actors import actor_for
from apps.admin_ops.api import audit_csv_response, parse_audit_filters
from apps.admin_ops.models import OPEN_STATUSES, ChangeRequest, ChangeRequestStatus
from apps.admin_ops.selectors import job_stats
from apps.npcs import prediction
from apps.router import selectors as router_selectors
from apps.security.scopes import ADMIN
from apps.security.selectors import user_scopes
from bodybroker.health import run_checks, supervised_processes

TIER_ROLES = {
    "gold": "Real-time NPC intents: at most 8 tokens, refreshed at 1–2 Hz.",
    "silver": "Interactive NPC dialogue with read-only tools.",
    "bronze": "Asynchronous expert jobs: story arcs, audits, reports.",
}


@login_required
def home(request: HttpRequest) -> HttpResponse:
    tiers = [
        {"name": name, "role": TIER_ROLES[name], "urls": conf["urls"], "model": conf["model"]}
        for name, conf in settings.BODYBROKER_TIERS.items()
    ]
    return render(request, "pages/home.html", {"tiers": tiers})


@login_required
async def dashboards(request: HttpRequest) -> HttpResponse:
    results = await run_checks()
    context = {
        "checks": {name: r for name, r in results.items()},
        "healthy": all(r.ok for r in results.values()),
        "processes": supervised_processes(),
    }
    # Templates read request.user lazily (a query), so they render in a thread.
    if request.GET.get("partial") == "health":
        return await sync_to_async(render)(request, "partials/health_table.html", context)
    context["stats"] = await sync_to_async(job_stats)()
    context["usage"] = await sync_to_async(router_selectors.usage_today)()
    context["tiers"] = router_selectors.tier_snapshot()
    context["prediction_hit_rate"] = prediction.hit_rate()
    return await sync_to_async(render)(request, "pages/dashboards.html", context)


AUDIT_PAGE_ROWS = 500


def _visible(request: HttpRequest) -> Any:
    """Admins see every request; anyone else the ones they wrote."""
    requests = selectors.approval_queue()
    if ADMIN in user_scopes(request.user):
        return requests
    return requests.filter(author_user_id=request.user.pk)


@login_required
def approvals(request: HttpRequest) -> HttpResponse:
    """The queue: counts by kind, open requests oldest first, live over /ws/approvals/."""
    is_admin = ADMIN in user_scopes(request.user)
    context = {
        "queue": list(_visible(request)),
        "counts": selectors.approval_counts_by_kind() if is_admin else [],
        "recent": list(
            selectors.change_requests()
            .exclude(status__in=[*OPEN_STATUSES, ChangeRequestStatus.EXECUTING])
            .order_by("-updated_at")[:15]
        )
        if is_admin
        else [],
        "is_admin": is_admin,
    }
    if request.GET.get("partial") == "queue":
        return render(request, "admin_ops/partials/queue.html", context)
    return render(request, "admin_ops/approvals.html", context)


def _detail_context(request: HttpRequest, change_request: ChangeRequest) -> dict[str, Any]:
    scopes = user_scopes(request.user)
    blockers = services.approval_blockers(change_request, request.user, scopes)
    decisions = list(change_request.decisions.all())
    return {
        "cr": change_request,
        "blockers": blockers,
        "can_decide": ADMIN in scopes,
        "is_author": services.is_author(change_request, request.user),
        "is_open": change_request.status in OPEN_STATUSES,
        "decisions": decisions,
        "approvals": [
            d
            for d in decisions
            if d.decision == "approve" and d.revision == change_request.revision
        ],
        "trail": list(selectors.change_request_audit_trail(change_request_id=change_request.id)),
    }


@login_required
def approval_detail(request: HttpRequest, change_request_id: Any) -> HttpResponse:
    """One request: its diff, why it cannot be approved (if so), the decisions and the history."""
    change_request = selectors.change_request_with_history(change_request_id=change_request_id)
    if change_request is None or not (
        ADMIN in user_scopes(request.user) or services.is_author(change_request, request.user)
    ):
        raise Http404("no such change request")
    context = _detail_context(request, change_request)
    if request.GET.get("partial") == "detail":
        return render(request, "admin_ops/partials/detail.html", context)
    return render(request, "admin_ops/approval_detail.html", context)


@require_POST
@login_required
def approval_decide(request: HttpRequest, change_request_id: Any) -> HttpResponseBase:
    """Approve, reject or refresh from the detail page's one-click form."""
    action = request.POST.get("action", "")
    comment = request.POST.get("comment", "")
    scopes = user_scopes(request.user)
    try:
        if action == "approve":
            change_request = services.change_request_approve(
                change_request_id=change_request_id,
                user=request.user,
                scopes=scopes,
                comment=comment,
            )
            messages.success(request, f"Approved. It is now {change_request.status}.")
        elif action == "reject":
            services.change_request_reject(
                change_request_id=change_request_id,
                user=request.user,
                scopes=scopes,
                comment=comment,
            )
            messages.success(request, "Rejected.")
        elif action == "refresh":
            services.change_request_revise(
                change_request_id=change_request_id,
                actor=actor_for(user=request.user),
                scopes=scopes,
            )
            messages.success(request, "Diff refreshed against the current target.")
        else:
            raise services.ChangeRequestError("choose approve, reject or refresh", field="action")
    except services.ChangeRequestError as exc:
        if exc.code == "not_found":
            raise Http404("no such change request") from exc
        change_request_or_none = selectors.change_request_with_history(
            change_request_id=change_request_id
        )
        if change_request_or_none is None:
            raise Http404("no such change request") from exc
        context = _detail_context(request, change_request_or_none)
        context["error"] = exc.message
        context["comment"] = comment
        status = {"forbidden": 403, "conflict": 409}.get(exc.code, 400)
        return render(request, "admin_ops/approval_detail.html", context, status=status)
    return redirect("approval-detail", change_request_id=change_request_id)


@login_required
def audit(request: HttpRequest) -> HttpResponseBase:
    """The audit log in the browser: filter, read, export the same selection as CSV."""
    if ADMIN not in user_scopes(request.user):
        return render(
            request,
            "pages/section.html",
            {"heading": "Audit log", "summary": "The audit log is for admins."},
            status=403,
        )
    error = ""
    filters: dict[str, Any] = {}
    try:
        filters = parse_audit_filters(request.GET)
    except ValidationError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {"query": exc.detail}
        error = "; ".join(f"{name}: {' '.join(map(str, msgs))}" for name, msgs in detail.items())
    fmt = filters.pop("export", "json")
    filters.pop("limit", None)
    events = selectors.audit_events(**filters) if not error else selectors.audit_events().none()
    if fmt == "csv":
        return audit_csv_response(events)
    query = request.GET.copy()
    query["export"] = "csv"
    query.pop("limit", None)
    return render(
        request,
        "admin_ops/audit.html",
        {
            "events": events[:AUDIT_PAGE_ROWS],
            "filters": request.GET,
            "error": error,
            "csv_query": query.urlencode(),
        },
        status=400 if error else 200,
    )
