"""Numbers as operators read them: ``21.7 s`` rather than ``21736.3 ms``, ``1,234``, ``93 %``."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


def _number(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@register.filter
def duration(milliseconds: Any) -> str:
    """A duration given in milliseconds, in the unit a person reads it in."""
    ms = _number(milliseconds)
    if ms is None:
        return ""
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


@register.filter
def thousands(value: Any) -> str:
    """A count with thousands separators."""
    number = _number(value)
    if number is None:
        return ""
    return f"{round(number):,}"


@register.filter
def percent(fraction: Any) -> str:
    """A fraction (0.93) as a percentage (93 %); small non-zero shares keep a decimal."""
    number = _number(fraction)
    if number is None:
        return ""
    share = number * 100
    if 0 < share < 1:
        return f"{share:.1f} %"
    return f"{share:.0f} %"
