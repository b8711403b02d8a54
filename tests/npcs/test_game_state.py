"""The game-state store: NPC and world snapshots, versioned writes, queued events on the bus."""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import get_channel_layer

from apps.npcs import selectors, services
from apps.npcs.models import GameStateEvent, NpcState, WorldState

pytestmark = pytest.mark.django_db


def test_an_applied_write_merges_into_the_state_and_bumps_the_version() -> None:
    services.game_state_apply(subject="npc:warden", changes={"set": {"mood": "wary"}}, by="t")
    result = services.game_state_apply(
        subject="npc:warden", changes={"set": {"room": "crypt"}, "unset": ["mood"]}, by="t"
    )
    assert result == {"subject": "npc:warden", "version": 2, "state": {"room": "crypt"}}
    assert NpcState.objects.get(npc_id="warden").state == {"room": "crypt"}
    assert not WorldState.objects.exists()


def test_reads_of_a_subject_never_written_are_empty() -> None:
    assert selectors.game_state_read("world:attic") == {}
    snapshot = selectors.game_state_snapshot("world:attic")
    assert snapshot["exists"] is False and snapshot["version"] == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "at least one key"),
        ({"set": []}, "'set' is an object"),
        ({"set": {"": 1}}, "1–64 characters"),
        ({"merge": {}}, "unknown change fields: merge"),
        ("mood=angry", "an object"),
    ],
)
def test_malformed_changes_are_refused(changes: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        services.check_changes(changes)


@pytest.mark.parametrize("subject", ["warden", "npc:", "npc:Warden", "tavern:x", "npc:a b"])
def test_subjects_are_npc_or_world_slugs(subject: str) -> None:
    with pytest.raises(selectors.BadSubjectError):
        selectors.parse_subject(subject)


@pytest.mark.django_db(transaction=True)
async def test_queued_events_are_kept_and_published_on_the_bus() -> None:
    from asgiref.sync import sync_to_async

    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    await layer.group_add(services.GAME_STATE_GROUP, channel)
    try:
        event = await sync_to_async(services.game_state_event_queue)(
            subject="world:crypt",
            kind="write",
            changes={"set": {"alarm": "ringing"}},
            reason="wire tripped",
            source="test",
        )
        message = await layer.receive(channel)
    finally:
        await layer.group_discard(services.GAME_STATE_GROUP, channel)
    assert message["type"] == "game_state.event"
    assert message["event"]["id"] == str(event.id) and message["event"]["status"] == "pending"
    stored = await GameStateEvent.objects.aget(pk=event.pk)
    assert stored.changes == {"set": {"alarm": "ringing"}, "unset": []}
    assert not await WorldState.objects.filter(region="crypt").aexists()
