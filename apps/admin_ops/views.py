"""Operator pages: the overview, dashboards, the approvals queue and detail, the audit log."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, QueryDict
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
from bodybroker.htmx import htmx_partial

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
    """The operators' overview. The dependency checks probe every engine and may wait seconds
    on a slow one, so the page never runs them: it renders from the database at once, and its
    health table (``?partial=health``) loads right after and refreshes every few seconds."""
    if htmx_partial(request, name="health"):
        results = await run_checks()
        context: dict[str, Any] = {
            "checks": results,
            "down": [name for name, r in results.items() if r.state == "down"],
            "busy": [name for name, r in results.items() if r.state == "busy"],
            "processes": supervised_processes(),
        }
        # Templates read request.user lazily (a query), so they render in a thread.
        return await sync_to_async(render)(request, "partials/health_table.html", context)
    context = {
        "stats": await sync_to_async(job_stats)(),
        "tiers": await sync_to_async(router_selectors.tiers_today)(),
        "prediction_hit_rate": prediction.hit_rate(),
    }
    return await sync_to_async(render)(request, "pages/dashboards.html", context)


AUDIT_PAGE_ROWS = 50


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
    queue = list(_visible(request))
    context = {
        "queue": queue,
        "worker_seen": (
            _worker_seen()
            if any(cr.status == ChangeRequestStatus.APPROVED for cr in queue)
            else True
        ),
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
    if htmx_partial(request, name="queue"):
        return render(request, "admin_ops/partials/queue.html", context)
    return render(request, "admin_ops/approvals.html", context)


def _worker_seen() -> bool:
    """Whether a Celery worker reported in recently (approved requests wait for one)."""
    window = settings.BODYBROKER_WORKER_HEARTBEAT_S * 3
    return selectors.workers_alive(within_s=window).exists()


def _plain(value: Any) -> str:
    """A result value in words: lists of names joined, nested data as indented JSON."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, sort_keys=True, default=str)
    return str(value)


def result_rows(result: Any) -> list[tuple[str, str]]:
    """What an executor reported, as rows of a table (its keys in plain words)."""
    if result is None:
        return []
    if not isinstance(result, dict):
        return [("result", _plain(result))]
    return [(str(key).replace("_", " "), _plain(value)) for key, value in result.items()]


def _detail_context(request: HttpRequest, change_request: ChangeRequest) -> dict[str, Any]:
    scopes = user_scopes(request.user)
    blockers = services.approval_blockers(change_request, request.user, scopes)
    decisions = list(change_request.decisions.all())
    return {
        "cr": change_request,
        "result_rows": result_rows(change_request.result),
        "changes_nothing": services.changes_nothing(change_request),
        "worker_seen": (
            _worker_seen() if change_request.status == ChangeRequestStatus.APPROVED else True
        ),
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
    if htmx_partial(request, name="detail"):
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
            messages.success(
                request,
                "Approved: it is queued for a worker, which runs it."
                if change_request.status == ChangeRequestStatus.APPROVED
                else f"Approved. It is still {change_request.status}: more approvals are needed.",
            )
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
    """The audit log in the browser: filter, read page by page, export the same selection as
    CSV. Empty filter fields are no filter; a bad one is shown on the page with a 400."""
    if ADMIN not in user_scopes(request.user):
        return render(
            request,
            "pages/section.html",
            {"heading": "Audit log", "summary": "The audit log is for admins."},
            status=403,
        )
    # What the form filled in, without the page number and the empty fields: the same query
    # serves the page links and the export, so both show exactly this selection.
    query = QueryDict(mutable=True)
    for name in selectors.AUDIT_FILTERS:
        value = request.GET.get(name, "").strip()
        if value:
            query[name] = value
    error = ""
    filters: dict[str, Any] = {}
    try:
        given = query.dict()
        if request.GET.get("export"):
            given["export"] = request.GET["export"]
        filters = parse_audit_filters(given)
    except ValidationError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {"query": exc.detail}
        error = "; ".join(f"{name}: {' '.join(map(str, msgs))}" for name, msgs in detail.items())
    fmt = filters.pop("export", "json")
    filters.pop("limit", None)
    events = selectors.audit_events(**filters) if not error else selectors.audit_events().none()
    if fmt == "csv":
        return audit_csv_response(events)
    page = Paginator(events, AUDIT_PAGE_ROWS).get_page(request.GET.get("page"))
    csv_query = query.copy()
    csv_query["export"] = "csv"
    return render(
        request,
        "admin_ops/audit.html",
        {
            "page": page,
            "events": page.object_list,
            "filters": query,
            "filtered": bool(query),
            "error": error,
            "filter_query": query.urlencode(),
            "csv_query": csv_query.urlencode(),
        },
        status=400 if error else 200,
    )
