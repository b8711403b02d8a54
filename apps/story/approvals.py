"""``lore.publish`` as a change request: the hooks the approvals flow (apps.admin_ops) calls.

Target ``lore:<slug>``, payload ``{"revision": N}`` — the revision the requester wants published.
Requests are opened by :func:`apps.story.services.lore_publish_request` (the pages and the REST
API) or through the change-request API. Executing calls
:func:`apps.story.services.lore_entry_publish`, the one function that publishes, on behalf of
the approver who completed the request.
"""

from __future__ import annotations

from typing import Any

from apps.story import services
from apps.story.models import LoreEntry


def _slug(target: str) -> str:
    prefix, _, slug = target.partition(":")
    if prefix != "lore" or not slug:
        raise ValueError("the target of lore.publish is lore:<slug>")
    return slug


def _revision_text(entry: LoreEntry, number: int | None) -> dict[str, Any]:
    """The title and body players see at revision ``number`` (none before a first publish)."""
    revision = (
        entry.revisions.filter(number=number).only("title", "body").first()
        if isinstance(number, int)
        else None
    )
    if revision is None:
        return {"title": None, "body": None}
    return {"title": revision.title, "body": revision.body}


def current_lore_state(target: str) -> dict[str, Any] | None:
    """What approvals are tied to: the entry's newest revision and what is published, with
    the published title and body (the diff's "before" is what players see now)."""
    entry = LoreEntry.objects.filter(slug=_slug(target)).first()
    if entry is None:
        return None
    return {
        "revision": entry.head_number,
        "published_revision": entry.published_number,
        "status": entry.status,
        **_revision_text(entry, entry.published_number),
    }


def check_publish_payload(target: str, payload: dict[str, Any]) -> None:
    revision = payload.get("revision")
    if set(payload) != {"revision"} or isinstance(revision, bool) or not isinstance(revision, int):
        raise ValueError('the payload of lore.publish is {"revision": <number>}')
    entry = LoreEntry.objects.filter(slug=_slug(target)).first()
    if entry is None:
        raise ValueError(f"no lore entry '{_slug(target)}'")
    if revision != entry.head_number:
        raise ValueError(f"revision {revision} is not the newest ({entry.head_number})")


def proposed_lore_state(target: str, payload: dict[str, Any], current: Any) -> dict[str, Any]:
    """The entry once the asked-for revision is published: its title and body go live."""
    state = dict(current or {})
    state.update(status="published", published_revision=payload.get("revision"))
    entry = LoreEntry.objects.filter(slug=_slug(target)).first()
    if entry is not None:
        state.update(_revision_text(entry, payload.get("revision")))
    return state


def publish_revision(
    *, target: str, payload: dict[str, Any], on_behalf_of: Any, change_request_id: Any
) -> dict[str, Any]:
    entry = services.lore_entry_publish(
        slug=_slug(target),
        revision_number=int(payload["revision"]),
        published_by=on_behalf_of,
        change_request_id=change_request_id,
    )
    return {"slug": entry.slug, "published_revision": entry.published_number}


def register() -> None:
    """Attach the hooks to the ``lore.publish`` kind, when the approvals app is installed."""
    try:
        from apps.admin_ops.kinds import register_executor
    except ImportError:  # approvals not installed: nothing to attach to
        return
    register_executor(
        "lore.publish",
        publish_revision,
        read_target=current_lore_state,
        preview=proposed_lore_state,
        validate=check_publish_payload,
    )
