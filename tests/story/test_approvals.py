"""``lore.publish`` through the approvals flow: a writer asks, an admin approves, the one
publish service runs on the approver's behalf."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from apps.admin_ops import services as ops
from apps.admin_ops.actors import Actor
from apps.security.scopes import ADMIN_ROLE, WRITER, scopes_for_roles
from apps.story import approvals, services
from apps.story.models import LoreEntry, LoreStatus
from tests.story.conftest import write


def test_a_writers_publish_request_is_executed_once_an_admin_approves(
    alice: User, adam: User
) -> None:
    write(alice, "flood", body="The tide came.")
    change_request = ops.change_request_create(
        kind="lore.publish",
        target="lore:flood",
        payload={"revision": 1},
        reason="ready for players",
        actor=Actor(user=alice),
        scopes=scopes_for_roles([WRITER]),
    )
    assert LoreEntry.objects.get(slug="flood").status == LoreStatus.DRAFT

    ops.change_request_approve(
        change_request_id=change_request.pk, user=adam, scopes=scopes_for_roles([ADMIN_ROLE])
    )
    ops.change_request_execute(change_request_id=change_request.pk)

    entry = LoreEntry.objects.get(slug="flood")
    assert entry.status == LoreStatus.PUBLISHED and entry.published_number == 1
    assert entry.published_by == adam


def test_the_publish_hooks_refuse_bad_payloads_and_stale_revisions(alice: User) -> None:
    write(alice, "flood", body="The tide came.")
    services.lore_entry_update(slug="flood", base_revision=1, changes={"body": "At night."})
    with pytest.raises(ValueError, match="not the newest"):
        approvals.check_publish_payload("lore:flood", {"revision": 1})
    with pytest.raises(ValueError, match="payload"):
        approvals.check_publish_payload("lore:flood", {"revision": "2"})
    with pytest.raises(ValueError, match="lore:<slug>"):
        approvals.check_publish_payload("npc:flood", {"revision": 2})
    assert approvals.current_lore_state("lore:flood")["revision"] == 2  # type: ignore[index]
    assert approvals.current_lore_state("lore:nothing") is None
