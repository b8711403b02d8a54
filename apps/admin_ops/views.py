"""Operator pages: the overview, dashboards and the approvals queue."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.admin_ops.selectors import job_stats
from bodybroker.health import run_checks

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
    }
    if request.GET.get("partial") == "health":
        return render(request, "partials/health_table.html", context)
    context["stats"] = await sync_to_async(job_stats)()
    return render(request, "pages/dashboards.html", context)


@login_required
def approvals(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "pages/section.html",
        {
            "heading": "Approvals",
            "summary": "No change requests are waiting. Publishing lore, game-state writes, "
            "security writes, cloud actions and adapter deploys queue here for a second person.",
        },
    )
