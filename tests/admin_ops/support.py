"""Scenes several admin_ops tests set up."""

from __future__ import annotations

from django.contrib.auth.models import User

from apps.admin_ops import services
from apps.admin_ops.actors import Actor
from apps.admin_ops.models import ChangeRequest
from apps.security.selectors import user_scopes
from apps.story import services as lore


def lore_edit_asked_to_publish(*, writer: User, editor: User, body: str) -> ChangeRequest:
    """The entry ``flood`` published at revision 1 with ``body``; the writer's revision 2 lets the
    warden's lantern go out, and the writer asks for it to be published."""
    lore.lore_entry_create(slug="flood", fields={"title": "Flood", "body": body}, author=writer)
    lore.lore_entry_publish(slug="flood", revision_number=1, published_by=editor)
    lore.lore_entry_update(
        slug="flood",
        base_revision=1,
        changes={"body": body.replace("keeps the lantern lit", "let the lantern go out")},
        author=writer,
    )
    return services.change_request_create(
        kind="lore.publish",
        target="lore:flood",
        payload={"revision": 2},
        reason="ready for players",
        actor=Actor(user=writer),
        scopes=user_scopes(writer),
    )
