"""``manage.py seed_npcs``: the demo NPCs of Port Wick (run by ``make run`` after seed_lore).

Idempotent: each NPC is created, or updated to these fields, by its slug. The slugs of NPCs who
are lore characters (``mara-voss``, ``silas-crane``) are those characters' slugs, so their
knowledge scopes line up with the lore corpus (``apps/story/corpus/lore.yaml``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.npcs import selectors, services

DEMO_NPCS: dict[str, dict[str, Any]] = {
    "mara-voss": {
        "name": "Mara Voss",
        "role": "night attendant at the Saltmarsh Morgue",
        "description": (
            "Keeps the lamps lit at the Saltmarsh Morgue from dusk to dawn. Survived the flood "
            "of 1887 on a coffin lid and hears the drowned whisper when the tide turns."
        ),
        "motivation": "keep the dead she has heard speak out of the broker's hands",
        "speaking_style": "quietly, in short sentences, pausing as if listening to someone else",
        "archetype": "civilian",
        "knowledge_scope": ["mara-voss"],
        "safety_lines": [
            "Hush. The drowned are listening, and I won't say that aloud.",
            "Some things stay in the cold room. Ask me something else.",
        ],
        "micro_policy": "civilian",
        "dialogue_max_tokens": 96,
    },
    "silas-crane": {
        "name": "Silas Crane",
        "role": "the body broker of Port Wick",
        "description": (
            "Runs a cold shop behind the Tallow Market, buying corpses from gravediggers and "
            "widows and reselling them to anatomists, priests and worse."
        ),
        "motivation": "close every deal and keep the Ledger of Debts balanced",
        "speaking_style": "softly and politely, never haggling, never explaining",
        "archetype": "civilian",
        "knowledge_scope": ["silas-crane"],
        "safety_lines": [
            "That is not a thing I sell, friend. Not at any price.",
            "Some debts are better left unwritten. Let us talk of something else.",
        ],
        "micro_policy": "civilian",
        "intent_hz": 0.5,
    },
    "gallowsgate-watchman": {
        "name": "Jory Hale",
        "role": "night watchman at Gallowsgate Docks for the Harbour Constabulary",
        "description": (
            "An old watchman who walks the quays with a lantern and a cudgel, counting the "
            "corpses the harbour pilots hook out of the water."
        ),
        "motivation": "keep the docks quiet and report every missing body to Sergeant Reeve",
        "speaking_style": "gruffly, in dockside slang, with suspicion",
        "archetype": "guard",
        "allowed_intents": [
            {"name": "idle", "args": []},
            {"name": "patrol", "args": ["route"]},
            {"name": "investigate", "args": ["x", "y"]},
            {"name": "approach_player", "args": []},
            {"name": "talk", "args": []},
            {"name": "attack", "args": []},
            {"name": "follow", "args": ["target"]},
        ],
        "default_intent": "patrol",
        "knowledge_scope": ["constable-reeve"],
        "safety_lines": [
            "Not on my watch, and not out loud. Move along.",
            "The sergeant'd have my badge for talking of that. Off with you.",
        ],
        "micro_policy": "guard",
        "intent_hz": 2.0,
    },
    "drowned-thing": {
        "name": "The Drowned Thing",
        "role": "something that climbs out of the harbour at low tide",
        "description": (
            "A shape in a burial shroud heavy with salt water that follows lantern light "
            "through the Drowned Ward and never quite lets itself be seen."
        ),
        "motivation": "find the one who sold its body",
        "speaking_style": "in wet whispers of a few broken words",
        "archetype": "stalker",
        "safety_lines": ["...no... not that... the tide... takes... that...", "...drown... it..."],
        "micro_policy": "stalker",
        "intent_hz": 1.5,
        "intent_max_tokens": 6,
        "dialogue_max_tokens": 32,
    },
}


class Command(BaseCommand):
    help = "Create or update the demo NPCs (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        created = updated = 0
        for slug, fields in DEMO_NPCS.items():
            if selectors.npc_get(slug=slug) is None:
                services.npc_create(slug=slug, fields=fields)
                created += 1
            else:
                services.npc_update(slug=slug, changes=fields)
                updated += 1
        self.stdout.write(f"NPCs: {created} created, {updated} updated")
