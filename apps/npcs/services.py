"""Writes of the game state: queueing state-change events and applying approved writes.

Events go out on the ``game_state`` channel-layer group (``type: "game_state.event"``) when
their row commits; applied writes go out as ``game_state.applied``.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from apps.npcs.models import GameStateEvent, NpcState, WorldState
from apps.npcs.selectors import parse_subject, state_cache_key
from bodybroker.broadcast import broadcast

GAME_STATE_GROUP = "game_state"
MAX_KEYS = 64


def check_changes(changes: Any) -> dict[str, Any]:
    """A change is ``{"set": {key: value}, "unset": [key]}`` with at least one of them."""
    if not isinstance(changes, dict):
        raise ValueError("changes is an object with 'set' and/or 'unset'")
    unknown = sorted(set(changes) - {"set", "unset"})
    if unknown:
        raise ValueError(f"unknown change fields: {', '.join(unknown)} (use 'set', 'unset')")
    to_set = changes.get("set", {})
    to_unset = changes.get("unset", [])
    if not isinstance(to_set, dict) or not isinstance(to_unset, list):
        raise ValueError("'set' is an object and 'unset' a list of keys")
    if not to_set and not to_unset:
        raise ValueError("a change sets or unsets at least one key")
    keys = [*to_set, *to_unset]
    if len(keys) > MAX_KEYS or any(not isinstance(k, str) or not 0 < len(k) <= 64 for k in keys):
        raise ValueError(f"at most {MAX_KEYS} keys, each a string of 1–64 characters")
    return {"set": dict(to_set), "unset": list(to_unset)}


def apply_changes(state: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The state after a shallow merge: ``set`` keys replaced, ``unset`` keys removed."""
    merged = dict(state)
    merged.update(changes.get("set", {}))
    for key in changes.get("unset", []):
        merged.pop(key, None)
    return merged


def _event_payload(event: GameStateEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "subject": event.subject,
        "kind": event.kind,
        "changes": event.changes,
        "status": event.status,
        "source": event.source,
        "change_request_id": str(event.change_request_id) if event.change_request_id else None,
    }


def game_state_event_queue(
    *, subject: str, kind: str, changes: Any, reason: str, source: str
) -> GameStateEvent:
    """Persist a state-change event and publish it on the ``game_state`` group on commit.

    A ``write`` event starts ``pending``: it changes nothing until its change request is
    approved (the caller opens one and links it with :func:`game_state_event_link`). Locks
    nothing.
    """
    parse_subject(subject)
    if kind not in GameStateEvent.Kind.values:
        raise ValueError("kind is 'hint' or 'write'")
    checked = check_changes(changes)
    status = (
        GameStateEvent.Status.PENDING
        if kind == GameStateEvent.Kind.WRITE
        else GameStateEvent.Status.PUBLISHED
    )
    event = GameStateEvent.objects.create(
        subject=subject,
        kind=kind,
        changes=checked,
        reason=reason[:2000],
        status=status,
        source=source[:200],
    )
    broadcast(GAME_STATE_GROUP, {"type": "game_state.event", "event": _event_payload(event)})
    return event


def game_state_event_link(*, event: GameStateEvent, change_request_id: Any) -> GameStateEvent:
    """Remember which change request decides a write event."""
    event.change_request_id = change_request_id
    event.save(update_fields=["change_request_id"])
    return event


def game_state_apply(
    *, subject: str, changes: dict[str, Any], by: str, change_request_id: Any = None
) -> dict[str, Any]:
    """Apply an approved write: merge ``changes`` into the subject's state and bump its version.

    Locks the subject's row (SELECT … FOR UPDATE; created if new). Marks the change request's
    pending events applied, drops the cached snapshot and broadcasts ``game_state.applied`` on
    commit. Returns ``{subject, version, state}``.
    """
    scope, name = parse_subject(subject)
    checked = check_changes(changes)
    with transaction.atomic():
        row: NpcState | WorldState
        if scope == "npc":
            NpcState.objects.get_or_create(npc_id=name)
            row = NpcState.objects.select_for_update().get(npc_id=name)
        else:
            WorldState.objects.get_or_create(region=name)
            row = WorldState.objects.select_for_update().get(region=name)
        row.state = apply_changes(row.state, checked)
        row.version += 1
        row.updated_by = by[:200]
        row.save()
        if change_request_id is not None:
            GameStateEvent.objects.filter(
                change_request_id=change_request_id, status=GameStateEvent.Status.PENDING
            ).update(status=GameStateEvent.Status.APPLIED, applied_at=timezone.now())
        key = state_cache_key(subject)
        transaction.on_commit(lambda: cache.delete(key))
        result = {"subject": subject, "version": row.version, "state": row.state}
        broadcast(GAME_STATE_GROUP, {"type": "game_state.applied", **result})
    return result


def game_state_events_close(*, change_request_id: Any, status: str) -> int:
    """Close the pending events of a rejected or expired change request."""
    closed = {
        "rejected": GameStateEvent.Status.REJECTED,
        "expired": GameStateEvent.Status.EXPIRED,
    }.get(status)
    if closed is None:
        return 0
    return GameStateEvent.objects.filter(
        change_request_id=change_request_id, status=GameStateEvent.Status.PENDING
    ).update(status=closed)
