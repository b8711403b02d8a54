"""Writes for lore: entries and their revisions, links, publishing, the retrieval index, quests,
storyteller jobs and assets.

Every save of an entry inserts an immutable revision. A save names the revision it was based
on; if the entry has moved on since, the save is merged field by field with what was saved
meanwhile (:mod:`apps.story.merge`): fields only one side changed merge on their own, and a
field both sides changed differently makes the save a conflict (nothing is written and the
caller gets every field's three versions) — never a silent lost update.

Pages and the REST API ask to publish through :func:`lore_publish_request`, which follows the
studio's policy (``BODYBROKER_LORE_PUBLISH``): by default it opens a ``lore.publish`` change
request that an approver who is not the requester decides. The state change itself is
:func:`lore_entry_publish` alone, so the approvals flow wraps exactly one function.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.security.models import ApiKey
from apps.story.markup import SLUG_RE, Link, LinkSyntaxError, parse_links
from apps.story.merge import LoreMerge, merge_fields
from apps.story.models import (
    CONTENT_FIELDS,
    Asset,
    AssetKind,
    LoreEntry,
    LoreKind,
    LoreLink,
    LoreRevision,
    LoreStatus,
    Quest,
    QuestEdge,
    QuestNode,
    StoryJob,
    StoryJobKind,
)

logger = logging.getLogger(__name__)

RESERVED_SLUGS = frozenset({"new", "search", "preview", "ask", "quests", "storyteller", "assets"})
MAX_TAGS = 20
MAX_SCOPE = 50


class LoreValidationError(Exception):
    """Input a writer must fix; ``fields`` maps each offending field to its messages."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("invalid fields: " + ", ".join(sorted(fields)))
        self.fields = fields


class LoreConflictError(Exception):
    """The entry moved on since the revision the save was based on; nothing was written.

    For an edit, ``merge`` holds every field's base, theirs and mine, and which of them
    conflict; ``base`` is the revision the writer started from (None if it is unknown)."""

    def __init__(
        self,
        *,
        entry: LoreEntry,
        current: LoreRevision,
        base_revision: int,
        merge: LoreMerge | None = None,
        base: LoreRevision | None = None,
    ) -> None:
        message = (
            f"'{entry.slug}' is at revision {current.number} (by {current.author_name}); "
            f"this save was based on revision {base_revision}"
        )
        if merge is not None:
            message += "; both changed " + ", ".join(f.name for f in merge.conflicts)
        super().__init__(message)
        self.entry = entry
        self.current = current
        self.base_revision = base_revision
        self.merge = merge
        self.base = base


class LorePermissionError(Exception):
    """The caller's role may not do this (writers draft, editors publish)."""


@dataclass(slots=True)
class SaveResult:
    """What a save produced: the entry, its new revision, and warnings worth showing."""

    entry: LoreEntry
    revision: LoreRevision
    warnings: list[str] = field(default_factory=list)
    merged: LoreMerge | None = None  # set when the save was merged with a newer revision


# --- checks ------------------------------------------------------------------------------------


def _as_text(value: Any, name: str, errors: dict[str, list[str]], *, limit: int) -> str:
    if not isinstance(value, str):
        errors[name] = ["must be a string"]
        return ""
    if len(value) > limit:
        errors[name] = [f"is {len(value)} characters; the limit is {limit}"]
    return value


def _known_personas(slugs: list[str]) -> set[str]:
    return set(
        LoreEntry.objects.filter(slug__in=slugs, kind=LoreKind.CHARACTER).values_list(
            "slug", flat=True
        )
    )


def check_lore_fields(*, fields: Mapping[str, Any], slug: str) -> tuple[dict[str, Any], list[Link]]:
    """Validate and normalise an entry's content; returns (clean fields, its links).

    Raises LoreValidationError naming every bad field: sizes, kinds, tags, unknown personas in
    the knowledge scope, spoiler levels, and malformed ``[[links]]``.
    """
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    unknown = sorted(set(fields) - set(CONTENT_FIELDS))
    for name in unknown:
        errors[name] = ["unknown field"]
    kind = fields.get("kind", LoreKind.FREEFORM)
    if kind not in LoreKind.values:
        errors["kind"] = [f"choose one of {', '.join(LoreKind.values)}"]
    clean["kind"] = kind
    title = _as_text(fields.get("title", ""), "title", errors, limit=200).strip()
    if not title and "title" not in errors:
        errors["title"] = ["an entry needs a title"]
    clean["title"] = title
    clean["summary"] = _as_text(fields.get("summary", ""), "summary", errors, limit=500).strip()
    body = _as_text(
        fields.get("body", ""), "body", errors, limit=settings.BODYBROKER_LORE_MAX_BODY_CHARS
    )
    clean["body"] = body.replace("\r\n", "\n")
    links: list[Link] = []
    if "body" not in errors:
        try:
            links = parse_links(clean["body"])
        except LinkSyntaxError as exc:
            errors["body"] = [f"invalid links: {exc}"]
    tags = fields.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        errors["tags"] = ["must be a list of strings"]
        tags = []
    normalised_tags: list[str] = []
    for tag in tags:
        cleaned = " ".join(tag.lower().split())
        if not cleaned or len(cleaned) > 40:
            errors.setdefault("tags", []).append(f"tag {tag!r} must be 1–40 characters")
        elif cleaned not in normalised_tags:
            normalised_tags.append(cleaned)
    if len(normalised_tags) > MAX_TAGS:
        errors.setdefault("tags", []).append(f"at most {MAX_TAGS} tags")
    clean["tags"] = normalised_tags
    scope = fields.get("knowledge_scope", [])
    if not isinstance(scope, list) or not all(isinstance(s, str) for s in scope):
        errors["knowledge_scope"] = ["must be a list of persona slugs"]
        scope = []
    scope = list(dict.fromkeys(s.strip() for s in scope if s.strip()))
    if len(scope) > MAX_SCOPE:
        errors["knowledge_scope"] = [f"at most {MAX_SCOPE} personas"]
    else:
        known = _known_personas(scope)
        if kind == LoreKind.CHARACTER:
            known.add(slug)
        missing = [s for s in scope if s not in known]
        if missing:
            errors["knowledge_scope"] = [
                "unknown persona "
                + ", ".join(repr(m) for m in missing)
                + ": a persona is the slug of a character entry"
            ]
    clean["knowledge_scope"] = scope
    spoiler = fields.get("spoiler_level", 0)
    if isinstance(spoiler, bool) or not isinstance(spoiler, int) or not 0 <= spoiler <= 3:
        errors["spoiler_level"] = ["must be an integer from 0 (none) to 3 (ending)"]
    clean["spoiler_level"] = spoiler
    if errors:
        raise LoreValidationError(errors)
    return clean, links


def check_slug(slug: str) -> None:
    if not SLUG_RE.match(slug) or len(slug) > 80:
        raise LoreValidationError({"slug": ["use lowercase letters, digits and single hyphens"]})
    if slug in RESERVED_SLUGS:
        raise LoreValidationError({"slug": [f"'{slug}' is reserved; pick another"]})


# --- entries -----------------------------------------------------------------------------------


def _links_replace(*, entry: LoreEntry, links: list[Link]) -> list[str]:
    """Rewrite the entry's outgoing links; returns warnings for the broken ones."""
    LoreLink.objects.filter(source=entry).delete()
    targets = dict(
        LoreEntry.objects.filter(slug__in=[link.target_slug for link in links]).values_list(
            "slug", "pk"
        )
    )
    LoreLink.objects.bulk_create(
        LoreLink(
            source=entry,
            target_slug=link.target_slug,
            target_id=targets.get(link.target_slug),
            label=link.label[:200],
        )
        for link in links
    )
    return [
        f"broken link [[{link.target_slug}]] on line {link.line}: no such entry yet"
        for link in links
        if link.target_slug not in targets
    ]


def _revision_insert(
    *,
    entry: LoreEntry,
    content: Mapping[str, Any],
    message: str,
    author: Any,
    author_key: ApiKey | None,
    restored_from: int | None = None,
) -> LoreRevision:
    entry.head_number += 1
    for name in CONTENT_FIELDS:
        setattr(entry, name, content[name])
    entry.save()
    return LoreRevision.objects.create(
        entry=entry,
        number=entry.head_number,
        message=message[:300],
        author=author if getattr(author, "pk", None) else None,
        author_key=author_key,
        restored_from=restored_from,
        **{name: content[name] for name in CONTENT_FIELDS},
    )


@transaction.atomic
def lore_entry_create(
    *,
    fields: Mapping[str, Any],
    slug: str | None = None,
    message: str = "",
    author: Any = None,
    author_key: ApiKey | None = None,
) -> SaveResult:
    """Create a draft entry with its first revision.

    Locks nothing (the unique slug decides a race); resolves other entries' broken links that
    pointed at this slug. Emits nothing.
    """
    title = fields.get("title")
    slug = (slug or (slugify(title)[:80].strip("-") if isinstance(title, str) else "")).strip()
    errors: dict[str, list[str]] = {}
    try:
        check_slug(slug)
    except LoreValidationError as exc:
        errors.update(exc.fields)
    try:
        clean, links = check_lore_fields(fields=fields, slug=slug)
    except LoreValidationError as exc:
        errors.update(exc.fields)
    if errors:
        if "title" in errors and not slug:
            errors.pop("slug", None)  # no slug only because there is no title
        raise LoreValidationError(errors)
    if LoreEntry.objects.filter(slug=slug).exists():
        raise LoreValidationError({"slug": [f"an entry '{slug}' already exists"]})
    entry = LoreEntry(slug=slug, created_by=author if getattr(author, "pk", None) else None)
    revision = _revision_insert(
        entry=entry,
        content=clean,
        message=message or "created",
        author=author,
        author_key=author_key,
    )
    warnings = _links_replace(entry=entry, links=links)
    LoreLink.objects.filter(target_slug=slug, target__isnull=True).update(target=entry)
    return SaveResult(entry, revision, warnings)


def _locked_entry(slug: str) -> LoreEntry:
    return LoreEntry.objects.select_for_update().get(slug=slug)


@transaction.atomic
def lore_entry_update(
    *,
    slug: str,
    base_revision: int,
    changes: Mapping[str, Any],
    message: str = "",
    author: Any = None,
    author_key: ApiKey | None = None,
) -> SaveResult:
    """Save ``changes`` (the fields the writer edited) as a new revision of the entry.

    Locks the entry row (``select_for_update``), so saves are serialised. If the entry is still
    at ``base_revision`` the changes apply to it. If it moved on, the save is merged three ways
    (base revision, newest revision, the writer's fields): fields only one side changed merge
    and the merged revision is saved (``SaveResult.merged`` says so); if any field was changed
    differently by both, LoreConflictError carries the whole merge and nothing is written.
    A save never writes a field value the writer did not see: fields they left alone keep
    whatever was saved meanwhile.
    """
    entry = _locked_entry(slug)
    head = {name: getattr(entry, name) for name in CONTENT_FIELDS}
    if entry.head_number == base_revision:
        clean, links = check_lore_fields(fields={**head, **changes}, slug=entry.slug)
        revision = _revision_insert(
            entry=entry, content=clean, message=message, author=author, author_key=author_key
        )
        return SaveResult(entry, revision, _links_replace(entry=entry, links=links))
    base = entry.revisions.filter(number=base_revision).first() if base_revision > 0 else None
    started = {name: getattr(base, name) for name in CONTENT_FIELDS} if base else None
    # The writer's version: what they started from with their edits; with no known start,
    # the fields they did not send count as unchanged.
    mine, _ = check_lore_fields(fields={**(started or head), **changes}, slug=entry.slug)
    merge = merge_fields(
        base=started,
        theirs=head,
        mine=mine,
        base_revision=base_revision,
        theirs_revision=entry.head_number,
    )
    if merge.conflicts:
        current = entry.revisions.select_related("author", "author_key").get(
            number=entry.head_number
        )
        raise LoreConflictError(
            entry=entry, current=current, base_revision=base_revision, merge=merge, base=base
        )
    clean, links = check_lore_fields(fields=merge.content, slug=entry.slug)
    revision = _revision_insert(
        entry=entry, content=clean, message=message, author=author, author_key=author_key
    )
    warnings = _links_replace(entry=entry, links=links)
    return SaveResult(entry, revision, warnings, merged=merge)


@transaction.atomic
def lore_entry_restore(
    *,
    slug: str,
    number: int,
    base_revision: int,
    author: Any = None,
    author_key: ApiKey | None = None,
) -> SaveResult:
    """Make old revision ``number`` the newest again, as a new revision (history is kept).

    Locks the entry row; raises LoreConflictError if the entry moved past ``base_revision``.
    """
    entry = _locked_entry(slug)
    old = entry.revisions.filter(number=number).first()
    if old is None:
        raise LoreValidationError({"revision": [f"'{slug}' has no revision {number}"]})
    if entry.head_number != base_revision:
        current = entry.revisions.get(number=entry.head_number)
        raise LoreConflictError(entry=entry, current=current, base_revision=base_revision)
    content = {name: getattr(old, name) for name in CONTENT_FIELDS}
    # The old revision was valid when saved; personas it names may have gone since.
    clean, links = check_lore_fields(fields=content, slug=entry.slug)
    revision = _revision_insert(
        entry=entry,
        content=clean,
        message=f"restored revision {number}",
        author=author,
        author_key=author_key,
        restored_from=number,
    )
    warnings = _links_replace(entry=entry, links=links)
    return SaveResult(entry, revision, warnings)


def lore_publish_allowed(*, user: Any = None, key: ApiKey | None = None) -> bool:
    """Editors and admins publish; writers draft. An API key publishes with the admin scope or
    when its owner is an editor."""
    from apps.security.scopes import ADMIN, ADMIN_ROLE, EDITOR

    if key is not None:
        if ADMIN in key.scopes:
            return True
        user = key.owner
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    return bool(user.groups.filter(name__in=(EDITOR, ADMIN_ROLE)).exists())


def lore_publish_direct(*, user: Any = None, key: ApiKey | None = None) -> bool:
    """Whether asking to publish publishes at once: only where the studio opted out of
    approvals (``BODYBROKER_LORE_PUBLISH=editors``), and only for editors and admins."""
    return settings.BODYBROKER_LORE_PUBLISH == "editors" and lore_publish_allowed(
        user=user, key=key
    )


@dataclass(slots=True)
class PublishOutcome:
    """What asking to publish did: published the entry at once (``change_request`` is None),
    or opened — or found already open — the ``lore.publish`` change request that decides it."""

    entry: LoreEntry
    change_request: Any = None
    already_open: bool = False


@transaction.atomic
def lore_publish_request(
    *,
    slug: str,
    revision_number: int,
    reason: str = "",
    requested_by: Any = None,
    requested_by_key: ApiKey | None = None,
) -> PublishOutcome:
    """Ask to publish revision ``revision_number`` (the newest, which the asker reviewed).

    The door pages and the REST API use. By default it opens a ``lore.publish`` change request
    (``apps.admin_ops``): an approver who is not the requester approves it and the Celery
    executor publishes on the approver's behalf; an open request for the same revision is
    returned instead of a second one. Where the studio opted out
    (:func:`lore_publish_direct`), an editor's ask publishes at once, audited. Raises
    LoreConflictError if the revision is not the newest, LorePermissionError if the caller may
    not ask. Locks the entry row, so two asks at once open one request; the change request
    service audits and broadcasts.
    """
    from apps.admin_ops import selectors as ops_selectors
    from apps.admin_ops import services as ops
    from apps.admin_ops.actors import actor_for
    from apps.security.selectors import user_scopes

    entry = LoreEntry.objects.select_for_update().filter(slug=slug).first()
    if entry is None:
        raise LoreValidationError({"slug": [f"no lore entry '{slug}'"]})
    if entry.head_number != revision_number:
        current = entry.revisions.get(number=entry.head_number)
        raise LoreConflictError(entry=entry, current=current, base_revision=revision_number)
    if lore_publish_direct(user=requested_by, key=requested_by_key):
        published = lore_entry_publish(
            slug=slug,
            revision_number=revision_number,
            published_by=requested_by,
            published_by_key=requested_by_key,
        )
        return PublishOutcome(published)
    target = f"lore:{slug}"
    for open_request in ops_selectors.approval_queue().filter(kind="lore.publish", target=target):
        if open_request.payload == {"revision": revision_number}:
            return PublishOutcome(entry, open_request, already_open=True)
    scopes = (
        frozenset(requested_by_key.scopes)
        if requested_by_key is not None
        else frozenset(user_scopes(requested_by))
    )
    try:
        change_request = ops.change_request_create(
            kind="lore.publish",
            target=target,
            payload={"revision": revision_number},
            reason=reason.strip() or f"publish revision {revision_number} of '{slug}'",
            actor=actor_for(user=requested_by, key=requested_by_key),
            scopes=scopes,
        )
    except ops.ChangeRequestError as exc:
        if exc.code == "forbidden":
            raise LorePermissionError(exc.message) from exc
        raise LoreValidationError({exc.field or "revision": [exc.message]}) from exc
    return PublishOutcome(entry, change_request)


@transaction.atomic
def lore_entry_publish(
    *,
    slug: str,
    revision_number: int,
    published_by: Any = None,
    published_by_key: ApiKey | None = None,
    change_request_id: Any = None,
) -> LoreEntry:
    """Publish revision ``revision_number`` — the one that was reviewed — of an entry.

    The one function that publishes. Its callers: the ``lore.publish`` executor (with the
    change request's id, on behalf of its approver), :func:`lore_publish_request` where the
    studio opted out of approvals, and operators' commands (``seed_lore``). Pages and the REST
    API never call it directly. Locks the entry row; refuses a writer (LorePermissionError) and
    a revision that is no longer the newest (LoreConflictError). Records a ``lore.publish``
    audit event unless a change request is executing (the approvals flow records its effect
    itself), and enqueues indexing of the published revision once the transaction commits.
    """
    if not lore_publish_allowed(user=published_by, key=published_by_key):
        raise LorePermissionError("publishing is an editor's act; writers save drafts")
    entry = _locked_entry(slug)
    if entry.head_number != revision_number:
        current = entry.revisions.get(number=entry.head_number)
        raise LoreConflictError(entry=entry, current=current, base_revision=revision_number)
    before = {"status": entry.status, "published_revision": entry.published_number}
    entry.status = LoreStatus.PUBLISHED
    entry.published_number = revision_number
    entry.published_at = timezone.now()
    entry.published_by = published_by if getattr(published_by, "pk", None) else None
    if entry.published_by is None and published_by_key is not None:
        entry.published_by = published_by_key.owner
    entry.save(
        update_fields=["status", "published_number", "published_at", "published_by", "updated_at"]
    )
    if change_request_id is None:
        from apps.admin_ops.actors import actor_for
        from apps.admin_ops.services import audit_record

        audit_record(
            action="lore.publish",
            target=f"lore:{slug}",
            actor=actor_for(user=published_by, key=published_by_key)
            if published_by is not None or published_by_key is not None
            else None,
            before=before,
            after={"status": entry.status, "published_revision": revision_number},
            summary=f"published revision {revision_number} without a change request",
        )
    from apps.story.tasks import index_lore_entry

    entry_id = entry.pk
    transaction.on_commit(lambda: index_lore_entry.delay(entry_id))
    return entry


# --- the retrieval index ------------------------------------------------------------------------


def lore_entry_index(*, entry_id: int) -> int:
    """(Re)index the published revision of an entry in the configured backend; returns the
    number of passages written. Idempotent: the entry's passages are replaced as a whole. An
    unpublished or missing entry is removed from the index. Locks the entry row, so two indexings
    of one entry (the publish task and a rebuild, or a redelivered task) run one after the other
    instead of racing to insert the same passages."""
    from apps.story.retrieval import chunk_published_entry, get_index

    index = get_index()
    with transaction.atomic():
        entry = LoreEntry.objects.select_for_update().filter(pk=entry_id).first()
        if entry is None or entry.published_number is None:
            index.remove_entry(entry_id)
            return 0
        chunks = chunk_published_entry(entry)
        index.replace_entry(entry_id, chunks)
    return len(chunks)


def lore_index_rebuild() -> tuple[int, int]:
    """Rebuild the whole index from published lore; returns (entries, passages)."""
    from apps.story.retrieval import chunk_published_entry, get_index

    index = get_index()
    index.clear()
    entries = passages = 0
    for entry in LoreEntry.objects.filter(published_number__isnull=False).iterator():
        chunks = chunk_published_entry(entry)
        index.replace_entry(entry.pk, chunks)
        entries += 1
        passages += len(chunks)
    return entries, passages


def retrieval_preload() -> None:
    """Load what lore retrieval needs before a process serves anyone: the embedding model
    (seconds of CPU and a few hundred MB) and, for the embedded index, the passages in memory.
    Blocking: start-up runs it in a worker thread. A database that is not ready yet only
    leaves the passages to the first search; the model is what must never load on a request."""
    import gc

    from apps.story.retrieval import get_index
    from apps.story.retrieval.embedder import embed_texts, warm

    warm()
    embed_texts(["start-up"])  # the first pass sets up what later ones reuse
    # The model's objects live as long as the process: out of the collector's generations, so
    # full collections stay short.
    gc.freeze()
    index = get_index()
    memory = getattr(index, "memory", None)  # the embedded index keeps its passages in memory
    if callable(memory):
        try:
            memory()
        except DatabaseError:
            logger.warning("lore passages not preloaded: the database is not ready", exc_info=True)


# --- quests -------------------------------------------------------------------------------------


def _check_key(value: str, name: str) -> str:
    value = value.strip()
    if not SLUG_RE.match(value) or len(value) > 60:
        raise LoreValidationError({name: ["use lowercase letters, digits and single hyphens"]})
    return value


def _check_title(value: str, name: str = "title") -> str:
    value = value.strip()
    if not value or len(value) > 200:
        raise LoreValidationError({name: ["give a title of 1–200 characters"]})
    return value


@transaction.atomic
def quest_create(*, title: str, summary: str = "", slug: str = "", created_by: Any = None) -> Quest:
    """Create an empty quest graph. Locks nothing; the unique slug decides a race."""
    title = _check_title(title)
    slug = _check_key(slug or slugify(title)[:60].strip("-"), "slug")
    if Quest.objects.filter(slug=slug).exists():
        raise LoreValidationError({"slug": [f"a quest '{slug}' already exists"]})
    return Quest.objects.create(
        slug=slug,
        title=title,
        summary=summary[:5000],
        created_by=created_by if getattr(created_by, "pk", None) else None,
    )


@transaction.atomic
def quest_node_save(
    *,
    quest: Quest,
    key: str,
    title: str,
    text: str = "",
    is_start: bool = False,
    is_ending: bool = False,
    lore_refs: list[str] | None = None,
) -> QuestNode:
    """Add a beat, or update the beat with this key. Lore references may name entries that do
    not exist yet: validation reports them rather than refusing the save."""
    key = _check_key(key, "key")
    title = _check_title(title)
    refs = [r.strip() for r in (lore_refs or []) if r.strip()]
    bad = [r for r in refs if not SLUG_RE.match(r)]
    if bad:
        raise LoreValidationError({"lore_refs": [f"not entry slugs: {', '.join(bad)}"]})
    node, _ = QuestNode.objects.update_or_create(
        quest=quest,
        key=key,
        defaults={
            "title": title,
            "text": text[:5000],
            "is_start": is_start,
            "is_ending": is_ending,
            "lore_refs": list(dict.fromkeys(refs)),
        },
    )
    Quest.objects.filter(pk=quest.pk).update(updated_at=timezone.now())
    return node


@transaction.atomic
def quest_edge_add(
    *, quest: Quest, source_key: str, target_key: str, condition: str = ""
) -> QuestEdge:
    """Join two beats of the quest. Raises LoreValidationError for unknown beats."""
    nodes = {n.key: n for n in quest.nodes.filter(key__in=(source_key, target_key))}
    errors = {
        name: [f"no beat '{key}' in this quest"]
        for name, key in (("source", source_key), ("target", target_key))
        if key not in nodes
    }
    if errors:
        raise LoreValidationError(errors)
    if len(condition) > 300:
        raise LoreValidationError({"condition": ["at most 300 characters"]})
    edge, _ = QuestEdge.objects.get_or_create(
        quest=quest,
        source=nodes[source_key],
        target=nodes[target_key],
        condition=condition.strip(),
    )
    return edge


@transaction.atomic
def quest_node_delete(*, quest: Quest, key: str) -> None:
    """Remove a beat and the edges touching it."""
    quest.nodes.filter(key=key).delete()


@transaction.atomic
def quest_edge_delete(*, quest: Quest, edge_id: int) -> None:
    quest.edges.filter(pk=edge_id).delete()


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


# --- assets -------------------------------------------------------------------------------------

ASSET_TYPES = {
    AssetKind.IMAGE: ("image/png", "image/jpeg", "image/webp", "image/gif"),
    AssetKind.AUDIO: ("audio/mpeg", "audio/ogg", "audio/wav", "audio/x-wav", "audio/flac"),
    AssetKind.TEMPLATE: ("text/plain", "text/markdown", "application/json", "text/html"),
}


@transaction.atomic
def asset_upload(
    *,
    kind: str,
    name: str,
    upload: UploadedFile,
    entry_slugs: list[str] | None = None,
    uploaded_by: Any = None,
) -> Asset:
    """Store an uploaded file in the asset storage and catalog it.

    Checks kind, name, size and content type before writing. The file is written through
    ``STORAGES["assets"]`` (filesystem by default, S3 in production). Locks nothing.
    """
    errors: dict[str, list[str]] = {}
    if kind not in AssetKind.values:
        errors["kind"] = [f"choose one of {', '.join(AssetKind.values)}"]
    name = name.strip() or (upload.name or "")
    if not name or len(name) > 200:
        errors["name"] = ["give a name of 1–200 characters"]
    size = upload.size or 0
    if size == 0:
        errors["file"] = ["the file is empty"]
    elif size > settings.BODYBROKER_ASSET_MAX_BYTES:
        errors["file"] = [f"is {size} bytes; the limit is {settings.BODYBROKER_ASSET_MAX_BYTES}"]
    content_type = (upload.content_type or "").split(";")[0].strip().lower()
    if kind in AssetKind.values and content_type not in ASSET_TYPES[AssetKind(kind)]:
        errors["file"] = [f"a {kind} must be one of {', '.join(ASSET_TYPES[AssetKind(kind)])}"]
    slugs = entry_slugs or []
    entries = list(LoreEntry.objects.filter(slug__in=slugs))
    missing = sorted(set(slugs) - {e.slug for e in entries})
    if missing:
        errors["entries"] = [f"no lore entry {', '.join(missing)}"]
    if errors:
        raise LoreValidationError(errors)
    digest = hashlib.sha256()
    for part in upload.chunks():
        digest.update(part)
    upload.seek(0)
    asset = Asset(
        kind=kind,
        name=name,
        content_type=content_type,
        size=size,
        sha256=digest.hexdigest(),
        uploaded_by=uploaded_by if getattr(uploaded_by, "pk", None) else None,
    )
    extension = os.path.splitext(upload.name or "")[1].lower()[:10]
    asset.file.save(f"{slugify(name)[:80] or 'asset'}{extension}", upload, save=False)
    asset.save()
    asset.entries.set(entries)
    return asset
