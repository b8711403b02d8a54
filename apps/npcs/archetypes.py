"""Archetype presets: the intent vocabulary and micro-policy an NPC of a kind starts with.

An NPC's ``allowed_intents`` is a closed vocabulary of ``{"name", "args"}``; the Gold tier may only
pick from it. A writer starts from an archetype's preset and edits it per NPC.
"""

from __future__ import annotations

from typing import Any

DEFAULT_INTENT = "idle"

_COMMON: tuple[tuple[str, tuple[str, ...]], ...] = (("idle", ()), ("talk", ()))

PRESETS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "guard": (
        *_COMMON,
        ("patrol", ("route",)),
        ("investigate", ("x", "y")),
        ("approach_player", ()),
        ("attack", ()),
        ("follow", ("target",)),
    ),
    "civilian": (
        *_COMMON,
        ("approach_player", ()),
        ("hide", ()),
        ("flee", ()),
        ("follow", ("target",)),
    ),
    "stalker": (
        ("idle", ()),
        ("investigate", ("x", "y")),
        ("follow", ("target",)),
        ("hide", ()),
        ("approach_player", ()),
        ("attack", ()),
        ("flee", ()),
    ),
}

# The micro-policy an archetype runs by default (the names of npc_runtime's policies).
POLICY_FOR_ARCHETYPE = {"guard": "guard", "civilian": "civilian", "stalker": "stalker"}


def archetype_names() -> list[str]:
    return sorted(PRESETS)


def archetype_intents(archetype: str) -> list[dict[str, Any]]:
    """The default allowed intents of ``archetype`` (a fresh list; ``[]`` when unknown)."""
    return [{"name": name, "args": list(args)} for name, args in PRESETS.get(archetype, ())]


def format_intents(intents: list[dict[str, Any]]) -> str:
    """Intents in the notation the editor shows, one a line: ``investigate(x, y)``."""
    return "\n".join(
        f"{i['name']}({', '.join(i.get('args', []))})" if i.get("args") else str(i["name"])
        for i in intents
    )


def parse_intents(text: str) -> list[dict[str, Any]]:
    """The editor notation back to ``[{"name", "args"}]``; raises ValueError on a bad line.

    Names and args are checked by the services; this only reads the shape ``name(a, b)``.
    """
    intents: list[dict[str, Any]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        name, paren, rest = line.partition("(")
        if paren and not rest.endswith(")"):
            raise ValueError(f"line {number}: write name(arg, arg) with a closing parenthesis")
        args = [a.strip() for a in rest[:-1].split(",") if a.strip()] if paren else []
        intents.append({"name": name.strip(), "args": args})
    return intents
