"""Writes for lore entries: the checks, their revisions and their links.

Every save of an entry inserts an immutable revision. A save names the revision it was based
on; if the entry has moved on since, the save is merged field by field with what was saved
meanwhile (:mod:`apps.story.merge`): fields only one side changed merge on their own, and a
field both sides changed differently makes the save a conflict (nothing is written and the
caller gets every field's three versions) — never a silent lost update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from apps.security.models import ApiKey
from apps.story.markup import SLUG_RE, Link, LinkSyntaxError, parse_links
from apps.story.merge import LoreMerge, merge_fields
from apps.story.models import CONTENT_FIELDS, LoreEntry, LoreKind, LoreLink, LoreRevision
from apps.story.services._common import _locked_entry

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
