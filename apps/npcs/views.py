"""NPC pages: the list and the dialogue playground against the Silver tier."""

from __future__ import annotations

from dataclasses import asdict

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from apps.router import services
from inference.errors import EngineError


@login_required
def npcs(request: HttpRequest) -> HttpResponse:
    return render(request, "pages/npcs.html")


@require_POST
@login_required
async def npcs_ask(request: HttpRequest) -> HttpResponse:
    """htmx partial: one Silver answer to the prompt typed on the NPCs page."""
    prompt = request.POST.get("prompt", "").strip()
    try:
        max_tokens = int(request.POST.get("max_tokens", "64"))
    except ValueError:
        max_tokens = 0
    if not prompt or not 1 <= max_tokens <= 512:
        return render(
            request,
            "partials/answer.html",
            {"error": "Write a line for the player and pick 1–512 tokens."},
            status=400,
        )
    infer_request = services.InferenceRequest(
        messages=[{"role": "user", "content": prompt}], sla="interactive", max_tokens=max_tokens
    )
    try:
        answer = await services.infer(request=infer_request, decision=infer_request.decide())
    except EngineError as exc:
        return render(
            request,
            "partials/answer.html",
            {"error": f"The Silver engine could not answer: {exc}"},
            status=503,
        )
    return render(request, "partials/answer.html", asdict(answer))
