"""Geometry for the quest graph's SVG: where each beat's box sits and how edges curve."""

from __future__ import annotations

from typing import Any

from django import template

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
