"""Private helpers the lore service modules share."""

from __future__ import annotations

from apps.story.models import LoreEntry


def _locked_entry(slug: str) -> LoreEntry:
    return LoreEntry.objects.select_for_update().get(slug=slug)
