"""Writes for quest graphs: quests, their beats and the edges between them."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.story.markup import SLUG_RE
from apps.story.models import Quest, QuestEdge, QuestNode
from apps.story.services.lore import LoreValidationError

# --- quests -------------------------------------------------------------------------------------


def _check_key(value: str, name: str) -> str:
    value = value.strip()
    if not SLUG_RE.match(value) or len(value) > 60:
        raise LoreValidationError({name: ["use lowercase letters, digits and single hyphens"]})
    return value


def _check_title(value: str, name: str = "title") -> str:
    value = value.strip()
    if not value or len(value) > 200:
        raise LoreValidationError({name: ["give a title of 1–200 characters"]})
    return value


@transaction.atomic
def quest_create(*, title: str, summary: str = "", slug: str = "", created_by: Any = None) -> Quest:
    """Create an empty quest graph. Locks nothing; the unique slug decides a race."""
    title = _check_title(title)
    slug = _check_key(slug or slugify(title)[:60].strip("-"), "slug")
    if Quest.objects.filter(slug=slug).exists():
        raise LoreValidationError({"slug": [f"a quest '{slug}' already exists"]})
    return Quest.objects.create(
        slug=slug,
        title=title,
        summary=summary[:5000],
        created_by=created_by if getattr(created_by, "pk", None) else None,
    )


@transaction.atomic
def quest_node_save(
    *,
    quest: Quest,
    key: str,
    title: str,
    text: str = "",
    is_start: bool = False,
    is_ending: bool = False,
    lore_refs: list[str] | None = None,
) -> QuestNode:
    """Add a beat, or update the beat with this key. Lore references may name entries that do
    not exist yet: validation reports them rather than refusing the save."""
    key = _check_key(key, "key")
    title = _check_title(title)
    refs = [r.strip() for r in (lore_refs or []) if r.strip()]
    bad = [r for r in refs if not SLUG_RE.match(r)]
    if bad:
        raise LoreValidationError({"lore_refs": [f"not entry slugs: {', '.join(bad)}"]})
    node, _ = QuestNode.objects.update_or_create(
        quest=quest,
        key=key,
        defaults={
            "title": title,
            "text": text[:5000],
            "is_start": is_start,
            "is_ending": is_ending,
            "lore_refs": list(dict.fromkeys(refs)),
        },
    )
    Quest.objects.filter(pk=quest.pk).update(updated_at=timezone.now())
    return node


@transaction.atomic
def quest_edge_add(
    *, quest: Quest, source_key: str, target_key: str, condition: str = ""
) -> QuestEdge:
    """Join two beats of the quest. Raises LoreValidationError for unknown beats."""
    nodes = {n.key: n for n in quest.nodes.filter(key__in=(source_key, target_key))}
    errors = {
        name: [f"no beat '{key}' in this quest"]
        for name, key in (("source", source_key), ("target", target_key))
        if key not in nodes
    }
    if errors:
        raise LoreValidationError(errors)
    if len(condition) > 300:
        raise LoreValidationError({"condition": ["at most 300 characters"]})
    edge, _ = QuestEdge.objects.get_or_create(
        quest=quest,
        source=nodes[source_key],
        target=nodes[target_key],
        condition=condition.strip(),
    )
    return edge


@transaction.atomic
def quest_node_delete(*, quest: Quest, key: str) -> None:
    """Remove a beat and the edges touching it."""
    quest.nodes.filter(key=key).delete()


@transaction.atomic
def quest_edge_delete(*, quest: Quest, edge_id: int) -> None:
    quest.edges.filter(pk=edge_id).delete()
