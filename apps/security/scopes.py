"""What a caller may do: API-key scopes and the scopes each role (Django group) grants.

A scope names a door, not an object: ``infer`` (REST and OpenAI-compatible inference), ``game``
(the game-client websocket), ``lore`` (lore and story APIs, storyteller/RAG MCP), ``jobs`` (submit
and read Bronze jobs), ``npc`` (create NPC definitions and ask for changes to them, which an
admin approves), ``admin`` (approvals, audit, admin MCP, metrics).

Editors hold ``npc``: they design NPCs with the writers, and every change to an existing NPC
still waits for an admin's approval. Writers read NPCs (``lore``) but do not change them: an NPC's
prompt reaches every player, so it is not a draft. Operators run the live game and keys; NPC
definitions are content, so operators do not hold ``npc`` either.
"""

from __future__ import annotations

from collections.abc import Iterable

INFER = "infer"
GAME = "game"
LORE = "lore"
JOBS = "jobs"
NPC = "npc"
ADMIN = "admin"
ALL_SCOPES: tuple[str, ...] = (INFER, GAME, LORE, JOBS, NPC, ADMIN)

WRITER = "writer"
EDITOR = "editor"
OPERATOR = "operator"
ADMIN_ROLE = "admin"
ROLES: tuple[str, ...] = (WRITER, EDITOR, ADMIN_ROLE, OPERATOR)

ROLE_SCOPES: dict[str, frozenset[str]] = {
    WRITER: frozenset({LORE, INFER}),
    EDITOR: frozenset({LORE, INFER, JOBS, NPC}),
    OPERATOR: frozenset({INFER, JOBS, GAME}),
    ADMIN_ROLE: frozenset(ALL_SCOPES),
}


class UnknownScopeError(ValueError):
    """A scope name that is not one of ALL_SCOPES."""


def parse_scopes(raw: str | Iterable[str]) -> tuple[str, ...]:
    """Validate and normalise scopes given as ``"a,b"`` or an iterable; order kept, no repeats."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    scopes: list[str] = []
    for item in items:
        scope = item.strip().lower()
        if not scope:
            continue
        if scope not in ALL_SCOPES:
            raise UnknownScopeError(f"unknown scope {scope!r}; choose from {', '.join(ALL_SCOPES)}")
        if scope not in scopes:
            scopes.append(scope)
    if not scopes:
        raise UnknownScopeError(f"give at least one scope from {', '.join(ALL_SCOPES)}")
    return tuple(scopes)


def scopes_for_roles(role_names: Iterable[str], *, is_superuser: bool = False) -> frozenset[str]:
    """The scopes a signed-in person has through their groups."""
    if is_superuser:
        return frozenset(ALL_SCOPES)
    granted: set[str] = set()
    for role in role_names:
        granted |= ROLE_SCOPES.get(role, frozenset())
    return frozenset(granted)
