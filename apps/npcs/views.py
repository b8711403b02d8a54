"""NPC pages: the list of NPC definitions, their create/edit form, and the dialogue playground
against the Silver tier (optionally playing one NPC's persona).

Editing needs the ``npc`` scope (editors, admins). Saving an edit that changes more than the
tuning opens an ``npc.update`` change request and shows it; an admin approves it.

The form posts with htmx and gets back its own partial, with inline errors and a 400 when the
NPC does not validate (``static/story/lore.js`` lets htmx swap 4xx partials); without htmx it
posts as a plain form and gets the whole page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.admin_ops import selectors as ops_selectors
from apps.admin_ops.actors import actor_for
from apps.admin_ops.services import ChangeRequestError
from apps.npcs import archetypes, personas, selectors
from apps.npcs import services as npc_services
from apps.npcs.models import MicroPolicy, Npc
from apps.router import services
from apps.security.scopes import ADMIN, NPC
from apps.security.selectors import user_scopes
from apps.story import selectors as lore_selectors
from bodybroker.htmx import htmx_partial, htmx_redirect
from inference.errors import EngineError

View = Callable[..., Any]


def _can_edit(user: Any) -> bool:
    return bool({NPC, ADMIN} & user_scopes(user))


def npc_editor_required(view: View) -> View:
    """Signed in, with the ``npc`` or ``admin`` scope (editors, admins)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not _can_edit(request.user):
            raise PermissionDenied("editing NPCs needs the 'npc' or 'admin' scope")
        response: HttpResponse = view(request, *args, **kwargs)
        return response

    return login_required(wrapped)


@login_required
def npcs(request: HttpRequest) -> HttpResponse:
    """Every NPC definition, and the Silver playground that can play one of them."""
    npc_list = list(selectors.npcs_list())
    return render(
        request,
        "pages/npcs.html",
        {"npcs": npc_list, "can_edit": _can_edit(request.user)},
    )


def _form_fields(request: HttpRequest) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The posted form as NPC fields, and the errors found while reading it."""
    post = request.POST
    errors: dict[str, list[str]] = {}
    fields: dict[str, Any] = {
        name: post.get(name, "")
        for name in ("name", "role", "description", "motivation", "speaking_style")
    }
    fields["archetype"] = post.get("archetype", "").strip()
    fields["micro_policy"] = post.get("micro_policy", "")
    fields["default_intent"] = post.get("default_intent", "").strip()
    fields["active"] = post.get("active") == "on"
    fields["knowledge_scope"] = [s for s in post.getlist("knowledge_scope") if s]
    fields["safety_lines"] = [line for line in post.get("safety_lines", "").splitlines()]
    try:
        fields["allowed_intents"] = archetypes.parse_intents(post.get("allowed_intents", ""))
    except ValueError as exc:
        errors["allowed_intents"] = [str(exc)]
    for name, cast in (
        ("intent_hz", float),
        ("intent_max_tokens", int),
        ("dialogue_max_tokens", int),
    ):
        raw = post.get(name, "").strip()
        try:
            fields[name] = cast(raw)
        except ValueError:
            errors[name] = ["a number"]
    return fields, errors


def _form_context(
    *, npc: Npc | None, form: dict[str, Any], slug: str, errors: dict[str, list[str]]
) -> dict[str, Any]:
    intents = form.get("allowed_intents")
    known = {p.slug: p.title for p in lore_selectors.lore_personas()}
    for scoped in form.get("knowledge_scope", []):
        known.setdefault(scoped, scoped)
    return {
        "npc": npc,
        "form": form,
        "slug": slug,
        "errors": errors,
        "intents_text": form.get("intents_text")
        or (archetypes.format_intents(intents) if isinstance(intents, list) else ""),
        "safety_text": "\n".join(form.get("safety_lines", [])),
        "archetypes": archetypes.archetype_names(),
        "presets": {
            a: archetypes.format_intents(archetypes.archetype_intents(a))
            for a in archetypes.archetype_names()
        },
        "policies": MicroPolicy.values,
        "lore_personas": sorted(known.items(), key=lambda item: item[1]),
    }


def _saved(request: HttpRequest, url: str | None = None) -> HttpResponse:
    return htmx_redirect(request, url or reverse("npcs"))


def _invalid(
    request: HttpRequest, *, npc: Npc | None, form: dict[str, Any], slug: str, errors: Any
) -> HttpResponse:
    form = {**form, "intents_text": request.POST.get("allowed_intents", "")}
    context = _form_context(npc=npc, form=form, slug=slug, errors=errors)
    template = "npcs/partials/npc_form.html" if htmx_partial(request) else "npcs/npc_edit.html"
    return render(request, template, context, status=400)


@npc_editor_required
def npc_new(request: HttpRequest) -> HttpResponse:
    """Create an NPC; a new form starts from the ``civilian`` archetype's preset."""
    if request.method == "POST":
        fields, errors = _form_fields(request)
        slug = request.POST.get("slug", "").strip()
        if not fields.get("allowed_intents"):
            fields.pop("allowed_intents", None)  # none written: the archetype's preset
        if not errors:
            try:
                npc_services.npc_create(
                    slug=slug, fields=fields, actor=actor_for(user=request.user)
                )
            except npc_services.NpcValidationError as exc:
                errors = exc.fields
        if errors:
            return _invalid(request, npc=None, form=fields, slug=slug, errors=errors)
        return _saved(request)
    archetype = request.GET.get("archetype", "civilian")
    form = {
        "archetype": archetype,
        "allowed_intents": archetypes.archetype_intents(archetype),
        "default_intent": archetypes.DEFAULT_INTENT,
        "micro_policy": archetypes.POLICY_FOR_ARCHETYPE.get(archetype, MicroPolicy.CIVILIAN),
        "intent_hz": 1.0,
        "intent_max_tokens": 8,
        "dialogue_max_tokens": 96,
        "active": True,
        "knowledge_scope": [],
        "safety_lines": [],
    }
    context = _form_context(npc=None, form=form, slug="", errors={})
    return render(request, "npcs/npc_edit.html", context)


@npc_editor_required
def npc_edit(request: HttpRequest, slug: str) -> HttpResponse:
    """Edit an NPC definition; the whole form is validated as one. Re-tuning saves at once; a
    change to who the NPC is opens an ``npc.update`` change request and shows it."""
    npc = selectors.npc_get(slug=slug)
    if npc is None:
        raise Http404(f"no NPC '{slug}'")
    if request.method == "POST":
        fields, errors = _form_fields(request)
        reason = request.POST.get("reason", "")
        outcome = None
        if not errors:
            try:
                outcome = npc_services.npc_change(
                    slug=slug,
                    changes=fields,
                    reason=reason,
                    actor=actor_for(user=request.user),
                    scopes=user_scopes(request.user),
                )
            except npc_services.NpcValidationError as exc:
                errors = exc.fields
            except ChangeRequestError as exc:
                errors = {exc.field or "reason": [exc.message]}
        if errors or outcome is None:
            form = {**fields, "reason": reason}
            return _invalid(request, npc=npc, form=form, slug=slug, errors=errors)
        if outcome.change_request is not None:
            return _saved(request, reverse("approval-detail", args=[outcome.change_request.id]))
        return _saved(request)
    form = {name: getattr(npc, name) for name in npc_services.NPC_FIELDS}
    context = _form_context(npc=npc, form=form, slug=slug, errors={})
    context["waiting"] = list(
        ops_selectors.change_requests_waiting_on(
            kind=npc_services.NPC_UPDATE_KIND, target=f"npc:{slug}"
        )
    )
    return render(request, "npcs/npc_edit.html", context)


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
    persona_slug = request.POST.get("persona", "").strip() or None
    if persona_slug is not None:
        npc = await sync_to_async(selectors.npc_get)(slug=persona_slug)
        if npc is None or not npc.active:
            return render(
                request,
                "partials/answer.html",
                {"error": f"No active NPC '{persona_slug}' to play."},
                status=400,
            )
        # the router's persona provider answers async callers from its cache only: fill it here
        await sync_to_async(personas.warm)([persona_slug])
    infer_request = services.InferenceRequest(
        messages=[{"role": "user", "content": prompt}],
        sla="interactive",
        max_tokens=max_tokens,
        persona=persona_slug,
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
