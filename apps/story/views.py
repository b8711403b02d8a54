"""Writers' pages: the lore list, editor with live preview, history and diffs, publishing with
its consistency report, "ask an NPC", quest graphs, the storyteller and the asset catalog.

Each view returns the whole page, or only its partial for an htmx request; form errors come
back as the same partial with a 4xx status and are shown inline (``static/story/lore.js`` lets
htmx swap them).
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.router import services as router_services
from apps.security.scopes import ADMIN, LORE
from apps.security.selectors import user_scopes
from apps.story import selectors, services
from apps.story.markup import render_markdown
from apps.story.merge import CONFLICT, LoreMerge
from apps.story.models import (
    CONTENT_FIELDS,
    SPOILER_LEVELS,
    Asset,
    AssetKind,
    LoreEntry,
    LoreKind,
    LoreStatus,
    Quest,
    StoryJob,
)
from bodybroker.htmx import htmx_partial, htmx_redirect
from inference.errors import EngineError

View = Callable[..., Any]


def lore_required(view: View) -> View:
    """Signed in, with the lore scope (writers, editors, admins)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if LORE not in user_scopes(request.user):
            raise PermissionDenied("the lore workspace needs the 'lore' scope")
        response: HttpResponse = view(request, *args, **kwargs)
        return response

    return login_required(wrapped)


def _entry_or_404(slug: str) -> LoreEntry:
    entry = selectors.lore_entry(slug=slug)
    if entry is None:
        raise Http404(f"no lore entry '{slug}'")
    return entry


def _render_body(body: str) -> str:
    from apps.story.markup import LinkSyntaxError, parse_links

    try:
        slugs = [link.target_slug for link in parse_links(body)]
    except LinkSyntaxError:
        slugs = []
    return render_markdown(body, titles=selectors.lore_titles(slugs))


def _saved_message(result: services.SaveResult, *, done: str = "Saved") -> str:
    """The confirmation after a save, saying what players' NPCs know meanwhile."""
    entry = result.entry
    text = f"{done} revision {result.revision.number}."
    if entry.published_number is not None and entry.published_number != entry.head_number:
        text += f" Not published yet: NPCs still know revision {entry.published_number}."
    return text


def _form_fields(request: HttpRequest) -> dict[str, Any]:
    post = request.POST
    spoiler_raw = post.get("spoiler_level", "0")
    return {
        "kind": post.get("kind", LoreKind.FREEFORM),
        "title": post.get("title", ""),
        "summary": post.get("summary", ""),
        "body": post.get("body", ""),
        "tags": [t for t in (s.strip() for s in post.get("tags", "").split(",")) if t],
        "knowledge_scope": post.getlist("knowledge_scope"),
        "spoiler_level": int(spoiler_raw) if spoiler_raw.isdigit() else spoiler_raw,
    }


def _editor_context(**extra: Any) -> dict[str, Any]:
    return {
        "kinds": LoreKind.choices,
        "spoilers": SPOILER_LEVELS,
        "personas": selectors.lore_personas(),
        **extra,
    }


# --- list ----------------------------------------------------------------------------------------


@lore_required
def lore(request: HttpRequest) -> HttpResponse:
    filters = {
        "kind": request.GET.get("kind", "") if request.GET.get("kind") in LoreKind.values else "",
        "status": request.GET.get("status", "")
        if request.GET.get("status") in LoreStatus.values
        else "",
        "tag": request.GET.get("tag", "")[:40],
        "q": request.GET.get("q", "")[:200],
    }
    entries = selectors.lore_entries(**filters)[:200]
    context = {"entries": entries, "filters": filters}
    if htmx_partial(request, target="results"):
        return render(request, "story/partials/entry_list.html", context)
    context.update(kinds=LoreKind.choices, statuses=LoreStatus.choices, tags=selectors.lore_tags())
    return render(request, "story/lore_list.html", context)


# --- create, read, edit ---------------------------------------------------------------------------


@lore_required
def lore_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        fields = _form_fields(request)
        slug = request.POST.get("slug", "").strip() or None
        try:
            result = services.lore_entry_create(
                fields=fields,
                slug=slug,
                message=request.POST.get("message", ""),
                author=request.user,
            )
        except services.LoreValidationError as exc:
            context = _editor_context(
                entry=None,
                form=fields,
                slug=slug or "",
                errors=exc.fields,
                base_revision=0,
                message=request.POST.get("message", ""),
            )
            return render(request, "story/partials/editor_form.html", context, status=400)
        messages.success(request, _saved_message(result))
        url = reverse("lore-entry", args=[result.entry.slug])
        if result.warnings:
            url += "?saved=1"
        return htmx_redirect(request, url)
    form = {"kind": request.GET.get("kind", LoreKind.FREEFORM), "spoiler_level": 0}
    context = _editor_context(
        entry=None, form=form, slug=request.GET.get("slug", ""), errors={}, base_revision=0
    )
    return render(request, "story/lore_edit.html", context)


@lore_required
def lore_entry(request: HttpRequest, slug: str) -> HttpResponse:
    entry = _entry_or_404(slug)
    links = selectors.lore_links(entry=entry)
    broken = [link for link in links["outgoing"] if link.target_id is None]
    return render(
        request,
        "story/lore_entry.html",
        {
            "entry": entry,
            "html": _render_body(entry.body),
            "links": links,
            "broken": broken,
            "direct": services.lore_publish_direct(user=request.user),
            "assets": entry.assets.all(),
        },
    )


FIELD_LABELS = {
    "kind": "Kind",
    "title": "Title",
    "summary": "Summary",
    "body": "Body",
    "tags": "Tags",
    "knowledge_scope": "Known to",
    "spoiler_level": "Spoiler level",
}
RESOLUTIONS = ("theirs", "mine", "edit")


def _shown(name: str, value: Any) -> str:
    """A field's value as the editor shows it."""
    if name in ("tags", "knowledge_scope"):
        return ", ".join(value) or "(none)"
    if name == "spoiler_level":
        return dict(SPOILER_LEVELS).get(value, str(value))
    return str(value) if value != "" else "(empty)"


def _resolved_fields(
    request: HttpRequest, *, entry: LoreEntry, fields: dict[str, Any], base: int
) -> dict[str, Any]:
    """Apply the writer's choices from a conflict form: for each field both sides changed,
    keep theirs (the revision the form is now based on), keep mine (what they first
    submitted) or use what is in the editor. A field with no choice keeps the editor's value,
    which is what the writer sees."""
    theirs = selectors.lore_revision(entry=entry, number=base)
    errors: dict[str, list[str]] = {}
    for name in fields:
        choice = request.POST.get(f"resolve_{name}", "")
        if not choice or choice == "edit":
            continue
        if choice not in RESOLUTIONS:
            errors[name] = ["choose theirs, yours or the edited value"]
        elif choice == "theirs" and theirs is not None:
            fields[name] = getattr(theirs, name)
        elif choice == "mine":
            try:
                fields[name] = json.loads(request.POST.get(f"mine_{name}", ""))
            except ValueError:
                errors[name] = ["your earlier value was lost in transit; edit it instead"]
    if errors:
        raise services.LoreValidationError(errors)
    return fields


def _conflict_context(exc: services.LoreConflictError) -> dict[str, Any]:
    """What the conflict view shows: each field both sides changed, side by side with a choice,
    and the fields that merged on their own."""
    merge: LoreMerge | None = exc.merge
    rows = []
    for field in merge.fields if merge else ():
        if field.outcome != CONFLICT:
            continue
        rows.append(
            {
                "name": field.name,
                "label": FIELD_LABELS[field.name],
                "base": None if exc.base is None else _shown(field.name, field.base),
                "theirs": _shown(field.name, field.theirs),
                "mine": _shown(field.name, field.mine),
                "mine_json": json.dumps(field.mine),
                "diff": selectors.text_diff(field.theirs, field.mine)
                if field.name == "body"
                else None,
            }
        )
    return {
        "conflict": exc,
        "conflict_fields": rows,
        "merged_theirs": [FIELD_LABELS[n] for n in merge.taken_from_theirs] if merge else [],
        "merged_mine": [FIELD_LABELS[n] for n in merge.taken_from_mine] if merge else [],
    }


@lore_required
def lore_edit(request: HttpRequest, slug: str) -> HttpResponse:
    entry = _entry_or_404(slug)
    if request.method == "POST":
        fields = _form_fields(request)
        base_raw = request.POST.get("base_revision", "")
        base = int(base_raw) if base_raw.isdigit() else -1
        message = request.POST.get("message", "")
        try:
            fields = _resolved_fields(request, entry=entry, fields=fields, base=base)
            result = services.lore_entry_update(
                slug=slug,
                base_revision=base,
                changes=fields,
                message=message,
                author=request.user,
            )
        except services.LoreValidationError as exc:
            context = _editor_context(
                entry=entry,
                form=fields,
                slug=slug,
                errors=exc.fields,
                base_revision=base,
                message=message,
            )
            return render(request, "story/partials/editor_form.html", context, status=400)
        except services.LoreConflictError as exc:
            # Nothing was written. The form comes back based on the newest revision, holding
            # the merge: what merged on its own, and the writer's value where both changed.
            context = _editor_context(
                entry=entry,
                form=exc.merge.content if exc.merge else fields,
                slug=slug,
                errors={},
                base_revision=exc.current.number,
                message=message,
                **_conflict_context(exc),
            )
            return render(request, "story/partials/editor_form.html", context, status=409)
        merged = result.merged
        if merged is not None and merged.taken_from_theirs:
            messages.info(
                request,
                f"Saved revision {result.revision.number}, merged with revision "
                f"{merged.theirs_revision}: its "
                + ", ".join(FIELD_LABELS[n].lower() for n in merged.taken_from_theirs)
                + " kept.",
            )
        else:
            messages.success(request, _saved_message(result))
        return htmx_redirect(request, reverse("lore-entry", args=[slug]))
    form = {name: getattr(entry, name) for name in CONTENT_FIELDS}
    context = _editor_context(
        entry=entry, form=form, slug=slug, errors={}, base_revision=entry.head_number
    )
    return render(request, "story/lore_edit.html", context)


@require_POST
@lore_required
def lore_preview(request: HttpRequest) -> HttpResponse:
    """Live preview: the body rendered as readers will see it, and any link problems."""
    from apps.story.markup import LinkSyntaxError, parse_links

    body = request.POST.get("body", "")
    problems: list[str] = []
    titles: dict[str, str] = {}
    try:
        links = parse_links(body)
        titles = selectors.lore_titles([link.target_slug for link in links])
        problems = [
            f"[[{link.target_slug}]] (line {link.line}) links to no entry yet"
            for link in links
            if link.target_slug not in titles
        ]
    except LinkSyntaxError as exc:
        problems = [f"invalid links: {exc}"]
    return render(
        request,
        "story/partials/preview.html",
        {"html": render_markdown(body, titles=titles), "problems": problems},
    )


# --- history, diff, restore ----------------------------------------------------------------------


@lore_required
def lore_history(request: HttpRequest, slug: str) -> HttpResponse:
    entry = _entry_or_404(slug)
    return render(
        request,
        "story/lore_history.html",
        {"entry": entry, "revisions": selectors.lore_history(entry=entry)},
    )


@lore_required
def lore_diff(request: HttpRequest, slug: str) -> HttpResponse:
    entry = _entry_or_404(slug)
    try:
        a = int(request.GET.get("a", entry.head_number - 1))
        b = int(request.GET.get("b", entry.head_number))
    except ValueError as exc:
        raise Http404("revisions are numbers") from exc
    old = selectors.lore_revision(entry=entry, number=min(a, b))
    new = selectors.lore_revision(entry=entry, number=max(a, b))
    if old is None or new is None:
        raise Http404("no such revision")
    return render(
        request,
        "story/lore_diff.html",
        {"entry": entry, "diff": selectors.lore_revision_diff(old=old, new=new)},
    )


@require_POST
@lore_required
def lore_restore(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    entry = _entry_or_404(slug)
    base_raw = request.POST.get("base_revision", "")
    try:
        result = services.lore_entry_restore(
            slug=slug,
            number=number,
            base_revision=int(base_raw) if base_raw.isdigit() else -1,
            author=request.user,
        )
    except (services.LoreConflictError, services.LoreValidationError) as exc:
        return render(
            request,
            "story/lore_history.html",
            {
                "entry": entry,
                "revisions": selectors.lore_history(entry=entry),
                "error": str(exc),
            },
            status=409 if isinstance(exc, services.LoreConflictError) else 400,
        )
    messages.success(request, _saved_message(result, done=f"Restored revision {number} as"))
    return htmx_redirect(request, reverse("lore-entry", args=[slug]))


# --- publishing ----------------------------------------------------------------------------------


@lore_required
def lore_publish(request: HttpRequest, slug: str) -> HttpResponse:
    """The review before publishing: rule checks and the Bronze review of the newest revision,
    the entry's publish requests, then the button (tied to the revision reviewed) that asks
    for a ``lore.publish`` approval — or, where the studio opted out, publishes."""
    entry = _entry_or_404(slug)
    direct = services.lore_publish_direct(user=request.user)
    error = ""
    status = 200
    if request.method == "POST":
        revision_raw = request.POST.get("revision", "")
        try:
            outcome = services.lore_publish_request(
                slug=slug,
                revision_number=int(revision_raw) if revision_raw.isdigit() else -1,
                reason=request.POST.get("reason", ""),
                requested_by=request.user,
            )
        except services.LorePermissionError as exc:
            error, status = str(exc), 403
        except services.LoreConflictError as exc:
            error, status = f"{exc}. Review the new revision before publishing.", 409
        except services.LoreValidationError as exc:
            error, status = "; ".join(m for ms in exc.fields.values() for m in ms), 400
        else:
            change_request = outcome.change_request
            if change_request is None:
                messages.success(request, f"Published revision {entry.head_number}.")
                return htmx_redirect(request, reverse("lore-entry", args=[slug]))
            messages.info(
                request,
                f"Publishing revision {change_request.payload['revision']} "
                + ("was already requested" if outcome.already_open else "is requested")
                + f" (change request {change_request.short_id}): an approver who is not "
                f"{change_request.author_label} decides.",
            )
            return htmx_redirect(request, reverse("lore-publish", args=[slug]))
    review = selectors.story_review_for(entry=entry)
    if review is None and request.method == "GET":
        review = services.storyteller_review_request(slug=slug, requested_by=request.user)
    publish_requests = selectors.lore_publish_requests(entry=entry)
    return render(
        request,
        "story/lore_publish.html",
        {
            "entry": entry,
            "findings": selectors.lore_consistency_report(entry=entry),
            "review": review,
            "progress": selectors.story_job_progress(story_job=review) if review else None,
            "direct": direct,
            "publish_requests": publish_requests,
            "waiting": [
                r
                for r in publish_requests
                if r.status in ("pending", "approved", "executing")
                and r.payload == {"revision": entry.head_number}
            ],
            "can_decide": ADMIN in user_scopes(request.user),
            "error": error,
        },
        status=status,
    )


# --- storyteller ---------------------------------------------------------------------------------


@lore_required
def storyteller(request: HttpRequest) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        parts_raw = request.POST.get("parts", "3")
        try:
            story_job = services.storyteller_arc_request(
                theme=request.POST.get("theme", ""),
                parts=int(parts_raw) if parts_raw.isdigit() else -1,
                requested_by=request.user,
            )
        except services.LoreValidationError as exc:
            errors = exc.fields
        else:
            _say_if_reused(request, story_job)
            return htmx_redirect(request, reverse("story-job", args=[story_job.pk]))
    return render(
        request,
        "story/storyteller.html",
        {"jobs": selectors.story_jobs(user=request.user), "errors": errors, "form": request.POST},
        status=400 if errors else 200,
    )


@require_POST
@lore_required
def lore_expand(request: HttpRequest, slug: str) -> HttpResponse:
    _entry_or_404(slug)
    try:
        story_job = services.storyteller_expand_request(
            slug=slug, instructions=request.POST.get("instructions", ""), requested_by=request.user
        )
    except services.LoreValidationError as exc:
        return HttpResponse("; ".join(m for ms in exc.fields.values() for m in ms), status=400)
    _say_if_reused(request, story_job)
    return htmx_redirect(request, reverse("story-job", args=[story_job.pk]))


def _say_if_reused(request: HttpRequest, story_job: StoryJob) -> None:
    if story_job.reused:
        messages.info(
            request,
            "The same request is still being worked on, so no second job was started: "
            "this is the one already running.",
        )


def _story_job_page(
    request: HttpRequest, story_job: StoryJob, *, error: str = "", status: int = 200
) -> HttpResponse:
    template = "story/partials/story_job.html" if htmx_partial(request) else "story/story_job.html"
    context = {
        "story_job": story_job,
        "progress": selectors.story_job_progress(story_job=story_job),
        "cancel_error": error,
    }
    return render(request, template, context, status=status)


@lore_required
def story_job(request: HttpRequest, story_job_id: str) -> HttpResponse:
    """A storyteller job's progress, polled in place while it waits or runs."""
    job = selectors.story_job(story_job_id=story_job_id)
    if job is None:
        raise Http404("no such storyteller job")
    return _story_job_page(request, job)


@require_POST
@lore_required
def story_job_cancel(request: HttpRequest, story_job_id: str) -> HttpResponse:
    """Cancel a waiting or running storyteller job (its Bronze job stops too)."""
    if selectors.story_job(story_job_id=story_job_id) is None:
        raise Http404("no such storyteller job")
    error, status = "", 200
    try:
        services.storyteller_job_cancel(story_job_id=story_job_id, user=request.user)
    except services.LorePermissionError as exc:
        error, status = str(exc), 403
    except services.LoreValidationError as exc:
        error, status = "; ".join(m for ms in exc.fields.values() for m in ms), 409
    job = selectors.story_job(story_job_id=story_job_id)
    if job is None:
        raise Http404("no such storyteller job")
    return _story_job_page(request, job, error=error, status=status)


# --- ask an NPC ----------------------------------------------------------------------------------


ASK_MAX_TOKENS = 96

# What a writer reads about where an answer came from (the router's ``Answer.source``).
ANSWER_SOURCES = {
    "model": "answered by the {tier} model",
    "fallback_model": "answered by the stand-in model, because the {tier} model did not answer",
    "cache": "the same question was answered a moment ago; this is that answer again",
    "template": "the {tier} model did not answer, so this is a stock line, not a real answer",
    "policy": "a stock line the game's rules give, not a model's answer",
}


def answer_words(answer: router_services.Answer) -> dict[str, Any]:
    """How the answer is described to a writer: where it came from, in plain words, and
    whether it stopped at the length limit."""
    tier = answer.tier.capitalize()
    return {
        "source": ANSWER_SOURCES.get(answer.source, "answered by the {tier} tier").format(
            tier=tier
        ),
        "cut_off": answer.finish_reason == "length",
        "seconds": answer.latency_ms / 1000,
    }


def _ask_event(kind: str, **fields: Any) -> bytes:
    return (json.dumps({"type": kind, **fields}) + "\n").encode()


@login_required
async def lore_ask(request: HttpRequest) -> HttpResponseBase:
    """Preview how an NPC would answer, grounded in the lore its persona may know.

    The answer streams as the model writes it (newline-delimited JSON events read by
    ``static/story/lore.js``): first what it waits behind, then the text, then the finished
    answer's HTML. A writer who cancels closes the connection, which stops the generation."""
    scopes = await sync_to_async(user_scopes)(request.user)
    if LORE not in scopes:
        raise PermissionDenied("the lore workspace needs the 'lore' scope")
    if request.method != "POST":
        personas = await sync_to_async(lambda: list(selectors.lore_personas()))()
        return render(
            request, "story/lore_ask.html", {"personas": personas, "max_tokens": ASK_MAX_TOKENS}
        )
    persona_slug = request.POST.get("persona", "")
    question = request.POST.get("question", "").strip()
    persona = await sync_to_async(selectors.lore_personas().filter(slug=persona_slug).first)()
    if persona is None or not question or len(question) > 1000:
        return render(
            request,
            "story/partials/ask_answer.html",
            {"error": "Pick an NPC and ask a question of 1–1000 characters."},
            status=400,
        )
    context = await sync_to_async(selectors.lore_context)(
        query=question, persona=persona.slug, limit=4, max_spoiler=None
    )
    from apps.router import selectors as router_selectors
    from apps.story.prompts import npc_messages

    request_ = router_services.InferenceRequest(
        messages=npc_messages(persona=persona, question=question, context=context),
        sla="interactive",
        max_tokens=ASK_MAX_TOKENS,
    )
    tier = request_.decide().tier
    waiting = {
        "tier": tier.capitalize(),
        "answering": router_selectors.answers_in_flight(tier=tier),
        "bronze_running": await sync_to_async(router_selectors.bronze_jobs_sharing)(tier=tier),
    }

    async def events() -> AsyncIterator[bytes]:
        yield _ask_event("waiting", **waiting)
        answer: router_services.Answer | None = None
        error = ""
        try:
            async for event in router_services.infer_stream(request=request_):
                if event.text:
                    yield _ask_event("text", text=event.text)
                if event.answer is not None:
                    answer = event.answer
        except EngineError as exc:
            error = f"The {waiting['tier']} model could not answer: {exc}"
        html = await sync_to_async(render_to_string)(
            "story/partials/ask_answer.html",
            {
                "answer": answer,
                "words": answer_words(answer) if answer is not None else None,
                "persona": persona,
                "context": context,
                "error": error,
                "max_tokens": ASK_MAX_TOKENS,
            },
        )
        yield _ask_event("done", html=html)

    response = StreamingHttpResponse(events(), content_type="application/x-ndjson")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # a proxy in front passes each event on at once
    return response


# --- quests --------------------------------------------------------------------------------------


@lore_required
def quests(request: HttpRequest) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            quest = services.quest_create(
                title=request.POST.get("title", ""),
                summary=request.POST.get("summary", ""),
                slug=request.POST.get("slug", ""),
                created_by=request.user,
            )
        except services.LoreValidationError as exc:
            errors = exc.fields
        else:
            return htmx_redirect(request, reverse("quest", args=[quest.slug]))
    return render(
        request,
        "story/quests.html",
        {"quests": selectors.quests(), "errors": errors, "form": request.POST},
        status=400 if errors else 200,
    )


@lore_required
def quest(request: HttpRequest, slug: str) -> HttpResponse:
    """The quest graph: SVG view, validation, and forms that edit it in place."""
    quest_obj = get_object_or_404(Quest, slug=slug)
    errors: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "node":
                services.quest_node_save(
                    quest=quest_obj,
                    key=request.POST.get("key", ""),
                    title=request.POST.get("title", ""),
                    text=request.POST.get("text", ""),
                    is_start=request.POST.get("is_start") == "on",
                    is_ending=request.POST.get("is_ending") == "on",
                    lore_refs=[
                        r.strip() for r in request.POST.get("lore_refs", "").split(",") if r.strip()
                    ],
                )
            elif action == "edge":
                services.quest_edge_add(
                    quest=quest_obj,
                    source_key=request.POST.get("source", ""),
                    target_key=request.POST.get("target", ""),
                    condition=request.POST.get("condition", ""),
                )
            elif action == "delete-node":
                services.quest_node_delete(quest=quest_obj, key=request.POST.get("key", ""))
            elif action == "delete-edge":
                edge_raw = request.POST.get("edge", "")
                services.quest_edge_delete(
                    quest=quest_obj, edge_id=int(edge_raw) if edge_raw.isdigit() else -1
                )
            else:
                errors = {"action": ["unknown action"]}
        except services.LoreValidationError as exc:
            errors = exc.fields
        status = 400 if errors else 200
    context = {"graph": selectors.quest_graph(quest=quest_obj), "errors": errors}
    if htmx_partial(request):
        return render(request, "story/partials/quest_graph.html", context, status=status)
    return render(request, "story/quest.html", context, status=status)


# --- assets --------------------------------------------------------------------------------------


@lore_required
def assets(request: HttpRequest) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            errors = {"file": ["choose a file"]}
        else:
            try:
                services.asset_upload(
                    kind=request.POST.get("kind", ""),
                    name=request.POST.get("name", ""),
                    upload=upload,
                    entry_slugs=[
                        s.strip() for s in request.POST.get("entries", "").split(",") if s.strip()
                    ],
                    uploaded_by=request.user,
                )
            except services.LoreValidationError as exc:
                errors = exc.fields
            else:
                return redirect("lore-assets")
    return render(
        request,
        "story/assets.html",
        {
            "assets": Asset.objects.prefetch_related("entries")[:200],
            "kinds": AssetKind.choices,
            "errors": errors,
        },
        status=400 if errors else 200,
    )


@lore_required
def asset_file(request: HttpRequest, asset_id: int) -> FileResponse:
    asset = get_object_or_404(Asset, pk=asset_id)
    return FileResponse(asset.file.open("rb"), content_type=asset.content_type)
