"""Writers' pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def lore(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "pages/section.html",
        {
            "heading": "Lore",
            "summary": "The lore workspace: characters, locations, factions, items, events and "
            "rules, versioned and linked. No entries have been written yet.",
        },
    )
