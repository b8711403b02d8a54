"""Publishing lore: who may, asking to, and the one function that does.

Pages and the REST API ask to publish through :func:`lore_publish_request`, which follows the
studio's policy (``BODYBROKER_LORE_PUBLISH``): by default it opens a ``lore.publish`` change
request that an approver who is not the requester decides. The state change itself is
:func:`lore_entry_publish` alone, so the approvals flow wraps exactly one function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.security.models import ApiKey
from apps.story.models import LoreEntry, LoreStatus
from apps.story.services._common import _locked_entry
from apps.story.services.lore import LoreConflictError, LorePermissionError, LoreValidationError


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
