"""Geometry for the quest graph's SVG (where each beat's box sits and how edges curve), and
how long a storyteller job has waited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone

from apps.story.selectors import NODE_H, NODE_W, QuestGraph

register = template.Library()


@register.simple_tag
def node_box(graph: QuestGraph, node: Any) -> dict[str, int]:
    x, y = graph.positions[node.pk]
    return {"x": x, "y": y, "w": NODE_W, "h": NODE_H, "tx": x + 10, "ty": y + 22, "ty2": y + 40}


@register.simple_tag
def edge_path(graph: QuestGraph, edge: Any) -> dict[str, Any]:
    sx, sy = graph.positions[edge.source_id]
    tx, ty = graph.positions[edge.target_id]
    x1, y1 = sx + NODE_W, sy + NODE_H // 2
    x2, y2 = tx, ty + NODE_H // 2
    if x2 <= x1:  # a loop back or a sibling: go around below
        x1, y1 = sx + NODE_W // 2, sy + NODE_H
        x2, y2 = tx + NODE_W // 2, ty + NODE_H
        bend = max(y1, y2) + 40
        d = f"M{x1},{y1} C{x1},{bend} {x2},{bend} {x2},{y2}"
        return {"d": d, "lx": (x1 + x2) // 2, "ly": bend - 4}
    mid = (x1 + x2) // 2
    d = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
    return {"d": d, "lx": mid - 30, "ly": (y1 + y2) // 2 - 4}


def _seconds_since(moment: datetime | None) -> int:
    if not isinstance(moment, datetime):
        return 0
    return max(0, int((timezone.now() - moment).total_seconds()))


@register.filter
def seconds_since(moment: datetime | None) -> int:
    """Whole seconds from ``moment`` until now (what the page's clock counts on from)."""
    return _seconds_since(moment)


@register.filter
def elapsed(moment: datetime | None) -> str:
    """How long ago ``moment`` was, as a waiting writer reads it: ``35 s``, ``2 min 05 s``
    (``static/story/lore.js`` keeps counting in the same words)."""
    seconds = _seconds_since(moment)
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"
