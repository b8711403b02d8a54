"""Writes for storyteller jobs: Bronze jobs that outline arcs, expand entries and review lore,
whose results land as draft entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.security.models import ApiKey
from apps.story.models import LoreEntry, LoreKind, StoryJob, StoryJobKind
from apps.story.services.lore import (
    RESERVED_SLUGS,
    LorePermissionError,
    LoreValidationError,
    lore_entry_create,
)

# --- storyteller jobs ---------------------------------------------------------------------------


def _story_job_running(
    *,
    kind: StoryJobKind,
    params: dict[str, Any],
    entry: LoreEntry | None,
    revision_number: int | None,
    requested_by: Any,
    requested_by_key: ApiKey | None,
) -> StoryJob | None:
    """The requester's job asking the same thing of the same revision that is still waiting
    or running, if any (marked ``reused``). Locks the requester's row first, so two clicks
    arriving together are decided one after the other."""
    from django.contrib.auth import get_user_model

    from apps.router.models import JobStatus

    user = requested_by if getattr(requested_by, "pk", None) else None
    if requested_by_key is not None:
        ApiKey.objects.select_for_update().filter(pk=requested_by_key.pk).first()
    elif user is not None:
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    else:
        return None
    running = (
        StoryJob.objects.select_related("job")
        .filter(
            kind=kind,
            params=params,
            entry=entry,
            revision_number=revision_number,
            requested_by=user,
            requested_by_key=requested_by_key,
            collected_at__isnull=True,
            cancelled_at__isnull=True,
            job__status__in=(JobStatus.QUEUED, JobStatus.RUNNING),
        )
        .order_by("-created_at")
        .first()
    )
    if running is not None:
        running.reused = True
    return running


def _story_job_start(
    *,
    kind: StoryJobKind,
    messages: list[dict[str, str]],
    max_tokens: int,
    params: dict[str, Any],
    entry: LoreEntry | None,
    revision_number: int | None,
    requested_by: Any,
    requested_by_key: ApiKey | None,
    refused_field: Mapping[str, str],
) -> StoryJob:
    """Queue the Bronze job and its collector — or return the same request's job while it is
    still waiting or running (``reused``), so clicking again never starts a second one.
    ``refused_field`` names the writer's field to fix when the job cannot fit the model's
    context window (``prompt`` or ``max_tokens``)."""
    from apps.router.services import InferenceRequest, JobRefused, job_submit
    from apps.story.tasks import collect_story_job

    running = _story_job_running(
        kind=kind,
        params=params,
        entry=entry,
        revision_number=revision_number,
        requested_by=requested_by,
        requested_by_key=requested_by_key,
    )
    if running is not None:
        return running
    try:
        job = job_submit(
            request=InferenceRequest(messages=messages, sla="async", max_tokens=max_tokens),
            kind=kind.value,
            submitted_by_user=requested_by,
            submitted_by_key=requested_by_key,
        )
    except JobRefused as exc:
        raise LoreValidationError({refused_field.get(exc.field, exc.field): [exc.message]}) from exc
    story_job = StoryJob.objects.create(
        kind=kind,
        params=params,
        job=job,
        entry=entry,
        revision_number=revision_number,
        requested_by=requested_by if getattr(requested_by, "pk", None) else None,
        requested_by_key=requested_by_key,
    )
    story_job_id = str(story_job.pk)
    transaction.on_commit(lambda: collect_story_job.apply_async((story_job_id,), countdown=1))
    return story_job


@transaction.atomic
def storyteller_arc_request(
    *,
    theme: str,
    parts: int,
    requested_by: Any = None,
    requested_by_key: ApiKey | None = None,
) -> StoryJob:
    """Queue a Bronze job that outlines a story arc; its text lands as a draft entry.

    Grounds the prompt in the published lore closest to the theme. Emits the Bronze job (on
    commit) and a collector task that turns its result into a draft.
    """
    from apps.story import prompts, selectors

    theme = theme.strip()
    errors: dict[str, list[str]] = {}
    if not theme or len(theme) > 500:
        errors["theme"] = ["describe the theme in 1–500 characters"]
    if isinstance(parts, bool) or not isinstance(parts, int) or not 1 <= parts <= 12:
        errors["parts"] = ["an arc has 1–12 parts"]
    if errors:
        raise LoreValidationError(errors)
    context = selectors.lore_context(query=theme, persona=None, limit=5)
    return _story_job_start(
        kind=StoryJobKind.ARC,
        messages=prompts.arc_messages(theme=theme, parts=parts, context=context),
        max_tokens=min(120 * parts, 1500),
        params={"theme": theme, "parts": parts},
        entry=None,
        revision_number=None,
        requested_by=requested_by,
        requested_by_key=requested_by_key,
        refused_field={"prompt": "theme", "max_tokens": "parts"},
    )


@transaction.atomic
def storyteller_expand_request(
    *,
    slug: str,
    instructions: str = "",
    requested_by: Any = None,
    requested_by_key: ApiKey | None = None,
) -> StoryJob:
    """Queue a Bronze job that expands an entry; the result lands as a new draft entry linked
    to the original (the original is never overwritten). Emits the job and its collector."""
    from apps.story import prompts, selectors

    entry = LoreEntry.objects.filter(slug=slug).first()
    if entry is None:
        raise LoreValidationError({"slug": [f"no entry '{slug}'"]})
    if len(instructions) > 1000:
        raise LoreValidationError({"instructions": ["at most 1000 characters"]})
    context = selectors.lore_context(query=entry.title, persona=None, limit=4)
    return _story_job_start(
        kind=StoryJobKind.EXPAND,
        messages=prompts.expand_messages(entry=entry, instructions=instructions, context=context),
        max_tokens=600,
        params={"slug": slug, "instructions": instructions},
        entry=entry,
        revision_number=entry.head_number,
        requested_by=requested_by,
        requested_by_key=requested_by_key,
        refused_field={"prompt": "instructions", "max_tokens": "instructions"},
    )


@transaction.atomic
def storyteller_review_request(
    *,
    slug: str,
    requested_by: Any = None,
    requested_by_key: ApiKey | None = None,
) -> StoryJob:
    """Queue a Bronze consistency review of an entry's newest revision against related lore.

    Reuses a review of the same revision that is still running or done (an editor opening the
    publish page twice starts one job). Emits the job and its collector."""
    from apps.story import prompts, selectors

    entry = LoreEntry.objects.filter(slug=slug).first()
    if entry is None:
        raise LoreValidationError({"slug": [f"no entry '{slug}'"]})
    existing = (
        StoryJob.objects.filter(
            kind=StoryJobKind.REVIEW, entry=entry, revision_number=entry.head_number, error=""
        )
        .order_by("-created_at")
        .first()
    )
    if existing is not None:
        return existing
    related = selectors.lore_related_entries(entry=entry)
    return _story_job_start(
        kind=StoryJobKind.REVIEW,
        messages=prompts.review_messages(entry=entry, related=related),
        max_tokens=300,
        params={"slug": slug},
        entry=entry,
        revision_number=entry.head_number,
        requested_by=requested_by,
        requested_by_key=requested_by_key,
        refused_field={"prompt": "slug", "max_tokens": "slug"},
    )


def storyteller_job_collect(*, story_job_id: str) -> StoryJob:
    """Turn a finished Bronze job into its outcome: a draft entry or a review report.

    Idempotent under concurrency: locks the story job row (``select_for_update``) and does
    nothing once it is collected. Drafts are never published here. Returns the story job, still
    uncollected if its Bronze job has not finished.
    """
    from apps.story import prompts

    with transaction.atomic():
        story_job = (
            StoryJob.objects.select_for_update(of=("self",))
            .select_related("job", "entry")
            .get(pk=story_job_id)
        )
        if story_job.collected_at is not None:
            return story_job
        job = story_job.job
        if job is None:
            story_job.error = "its Bronze job was deleted"
        elif job.status == "failed":
            story_job.error = job.error or "the Bronze job failed"
        elif job.status != "succeeded":
            return story_job
        elif story_job.kind == StoryJobKind.REVIEW:
            story_job.report_text = job.result_text.strip()
            story_job.cut_off = job.truncated
        else:
            story_job.cut_off = job.truncated
            title, body = prompts.draft_from_result(story_job=story_job, text=job.result_text)
            story_job.draft = _draft_create(
                title=title,
                body=body,
                source=story_job.entry,
                author=story_job.requested_by,
                author_key=story_job.requested_by_key,
                message=f"drafted by the storyteller ({story_job.get_kind_display()})"
                + ("; cut off at the length limit" if story_job.cut_off else ""),
            )
        story_job.collected_at = timezone.now()
        story_job.save(update_fields=["error", "report_text", "cut_off", "draft", "collected_at"])
    return story_job


def storyteller_job_cancel(
    *, story_job_id: Any, user: Any = None, key: ApiKey | None = None
) -> StoryJob:
    """Cancel a storyteller job that is still waiting or running: its Bronze job is cancelled
    (a running attempt stops its model call within a second) and it ends with no draft.

    Whoever asked for it may cancel it, and admins. Raises ``LorePermissionError`` for anyone
    else and ``LoreValidationError`` once it has finished. Idempotent for a cancelled job."""
    from apps.router import services as router_services
    from apps.security.scopes import ADMIN
    from apps.security.selectors import user_scopes

    with transaction.atomic():
        story_job = (
            StoryJob.objects.select_for_update(of=("self",))
            .select_related("job", "requested_by", "requested_by_key")
            .get(pk=story_job_id)
        )
        if key is not None:
            owner = story_job.requested_by_key_id == key.pk
            admin = ADMIN in key.scopes
            who = f"key {key.name}"
        else:
            owner = user is not None and story_job.requested_by_id == user.pk
            admin = ADMIN in user_scopes(user)
            who = user.get_username() if user is not None else "?"
        if not (owner or admin):
            raise LorePermissionError("only whoever asked for this job, or an admin, may cancel it")
        if story_job.cancelled_at is not None:
            return story_job
        if story_job.collected_at is not None:
            raise LoreValidationError(
                {"story_job": [f"it has already finished ({story_job.state})"]}
            )
        if story_job.job_id is not None:
            router_services.job_cancel(job_id=story_job.job_id, by=who)
        story_job.cancelled_at = story_job.collected_at = timezone.now()
        story_job.error = f"cancelled by {who}"
        story_job.save(update_fields=["cancelled_at", "collected_at", "error"])
    return story_job


def _draft_create(
    *,
    title: str,
    body: str,
    source: LoreEntry | None,
    author: Any,
    author_key: ApiKey | None,
    message: str,
) -> LoreEntry:
    base = slugify(title)[:60].strip("-") or "storyteller-draft"
    if base in RESERVED_SLUGS:
        base = f"{base}-draft"
    slug, n = base, 1
    while LoreEntry.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    fields: dict[str, Any] = {
        "kind": source.kind if source else LoreKind.EVENT,
        "title": title[:200],
        "summary": f"Storyteller draft expanding [[{source.slug}]]" if source else "",
        "body": body[: settings.BODYBROKER_LORE_MAX_BODY_CHARS],
        "tags": ["storyteller-draft"],
        "knowledge_scope": list(source.knowledge_scope) if source else [],
        "spoiler_level": source.spoiler_level if source else 0,
    }
    try:
        return lore_entry_create(
            fields=fields, slug=slug, message=message, author=author, author_key=author_key
        ).entry
    except LoreValidationError:
        # A model's text may hold malformed [[links]]; keep every word, just not as links.
        fields["body"] = fields["body"].replace("[[", "⟦").replace("]]", "⟧")
        fields["summary"] = fields["summary"].replace("[[", "").replace("]]", "")
        fields["knowledge_scope"] = []
        return lore_entry_create(
            fields=fields, slug=slug, message=message, author=author, author_key=author_key
        ).entry
