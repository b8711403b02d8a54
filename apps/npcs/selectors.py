"""Reads of the game state (NPC and world state, exact or cached for tools, and events) and of
NPC definitions (``npc_get``, ``npcs_list``, ``npc_prompt``)."""

from __future__ import annotations

import re
from typing import Any

from django.core.cache import cache
from django.db.models import OuterRef, QuerySet, Subquery

from apps.npcs.models import (
    Conversation,
    DialogueTurn,
    GameStateEvent,
    Npc,
    NpcState,
    WorldState,
)

STATE_CACHE_TTL_S = 5
SUBJECT = re.compile(r"^(npc|world):([a-z0-9][a-z0-9_-]{0,99})$")


class BadSubjectError(ValueError):
    """A subject that is not ``npc:<id>`` or ``world:<region>`` (lower-case slugs)."""


def parse_subject(subject: str) -> tuple[str, str]:
    """``"npc:warden"`` → ``("npc", "warden")``; raises BadSubjectError otherwise."""
    match = SUBJECT.match(subject)
    if match is None:
        raise BadSubjectError(
            f"a subject is npc:<id> or world:<region> (lower-case slug), not {subject!r}"
        )
    return match.group(1), match.group(2)


def _row(subject: str) -> NpcState | WorldState | None:
    scope, name = parse_subject(subject)
    if scope == "npc":
        return NpcState.objects.filter(npc_id=name).first()
    return WorldState.objects.filter(region=name).first()


def game_state_read(subject: str) -> dict[str, Any]:
    """The exact current state of ``subject`` from the database (``{}`` if never written).
    Change requests hash this, so it must never come from a cache."""
    row = _row(subject)
    return dict(row.state) if row is not None else {}


def state_cache_key(subject: str) -> str:
    return f"game_state:{subject}"


def game_state_snapshot(subject: str) -> dict[str, Any]:
    """``{subject, state, version, updated_at}`` for tools and clients, cached for a few seconds
    (writes drop the entry when they commit)."""
    parse_subject(subject)  # before the cache: a bad subject never becomes a key
    key = state_cache_key(subject)
    cached = cache.get(key)
    if cached is not None:
        return dict(cached, cached=True)
    row = _row(subject)
    snapshot = {
        "subject": subject,
        "exists": row is not None,
        "state": dict(row.state) if row is not None else {},
        "version": row.version if row is not None else 0,
        "updated_at": row.updated_at.isoformat() if row is not None else None,
    }
    cache.set(key, snapshot, STATE_CACHE_TTL_S)
    return dict(snapshot, cached=False)


def game_state_events(*, subject: str | None = None) -> QuerySet[GameStateEvent]:
    events = GameStateEvent.objects.all()
    if subject:
        events = events.filter(subject=subject)
    return events


# --- NPC definitions -----------------------------------------------------------------------------

PROMPT_DESCRIPTION_CHARS = 300  # Gold prompts stay short: the description is cut at a word


def npc_get(*, slug: str) -> Npc | None:
    return Npc.objects.filter(slug=slug).first()


def npcs_list(*, active: bool | None = None, archetype: str = "") -> QuerySet[Npc]:
    """NPC definitions by name; ``active``/``archetype`` filter when given."""
    npcs = Npc.objects.all()
    if active is not None:
        npcs = npcs.filter(active=active)
    if archetype:
        npcs = npcs.filter(archetype=archetype)
    return npcs


def npc_opening_lines(*, slug: str, conversations: int = 200) -> list[str]:
    """What players said first to the NPC, in its latest ``conversations`` conversations
    (newest first; conversations where the player has not spoken yet are left out)."""
    first_line = (
        DialogueTurn.objects.filter(
            conversation=OuterRef("pk"), speaker=DialogueTurn.Speaker.PLAYER
        )
        .order_by("created_at", "id")
        .values("text")[:1]
    )
    openings = (
        Conversation.objects.filter(npc_slug=slug)
        .order_by("-started_at")
        .annotate(opening=Subquery(first_line))
        .values_list("opening", flat=True)[:conversations]
    )
    return [line for line in openings if line]


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def npc_prompt(npc: Npc) -> str:
    """The persona system prompt of an NPC for the Gold and Silver tiers.

    Compact on purpose (a few sentences): it is the shared prefix of every intent request, so it
    is identical for every call of one NPC (prefix caches reuse it) and short enough for Gold.
    """
    who = f"You are {npc.name}" + (f", {_clip(npc.role, 200)}" if npc.role else "") + "."
    parts = [who]
    if npc.description:
        parts.append(_clip(npc.description, PROMPT_DESCRIPTION_CHARS))
    if npc.motivation:
        parts.append(f"You want: {_clip(npc.motivation, 200)}")
    if npc.speaking_style:
        parts.append(f"You speak {_clip(npc.speaking_style, 160)}")
    parts.append("Stay in character; never mention being an AI.")
    return " ".join(p if p.endswith((".", "!", "?", "…")) else p + "." for p in parts)
