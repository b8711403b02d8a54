"""Three-way merge of a lore entry's fields: what two writers started from (the base revision),
what was saved since (theirs: the entry's newest revision) and what this writer submitted (mine).

A field only one side changed takes that side's value; a field both sides changed to the same
value is no conflict; a field both changed differently is a conflict that a person resolves.
Merging is per field: a body both sides edited is one conflict, shown side by side, never
stitched together line by line behind the writer's back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from apps.story.models import CONTENT_FIELDS

SAME = "same"
THEIRS = "theirs"
MINE = "mine"
CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class FieldMerge:
    """One field's three versions and what merging made of them. ``base`` is None when the
    revision the writer started from is unknown (then every difference is a conflict)."""

    name: str
    base: Any
    theirs: Any
    mine: Any
    outcome: str

    @property
    def value(self) -> Any:
        """The merged value; a conflict proposes mine, which the writer confirms or replaces."""
        return self.theirs if self.outcome in (SAME, THEIRS) else self.mine


@dataclass(frozen=True, slots=True)
class LoreMerge:
    """Every content field of an entry, merged (in ``CONTENT_FIELDS`` order)."""

    base_revision: int
    theirs_revision: int
    fields: tuple[FieldMerge, ...]

    @property
    def conflicts(self) -> list[FieldMerge]:
        return [f for f in self.fields if f.outcome == CONFLICT]

    @property
    def taken_from_theirs(self) -> list[str]:
        return [f.name for f in self.fields if f.outcome == THEIRS]

    @property
    def taken_from_mine(self) -> list[str]:
        return [f.name for f in self.fields if f.outcome == MINE]

    @property
    def content(self) -> dict[str, Any]:
        """The merged content: each field's merged value (mine where they conflict)."""
        return {f.name: f.value for f in self.fields}


def merge_fields(
    *,
    base: Mapping[str, Any] | None,
    theirs: Mapping[str, Any],
    mine: Mapping[str, Any],
    base_revision: int,
    theirs_revision: int,
) -> LoreMerge:
    """Merge every content field. ``mine`` must hold every field, normalised the way saved
    revisions are, so that an unchanged field compares equal to the base."""
    merged: list[FieldMerge] = []
    for name in CONTENT_FIELDS:
        was = base[name] if base is not None else None
        their, my = theirs[name], mine[name]
        if my == their:
            outcome = SAME
        elif base is not None and my == was:
            outcome = THEIRS
        elif base is not None and their == was:
            outcome = MINE
        else:
            outcome = CONFLICT
        merged.append(FieldMerge(name, was, their, my, outcome))
    return LoreMerge(base_revision, theirs_revision, tuple(merged))
