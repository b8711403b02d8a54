"""Template filters for what the signed-in person may do: ``{% if user|has_scope:"admin" %}``."""

from __future__ import annotations

from typing import Any

from django import template

from apps.security.selectors import user_scopes

register = template.Library()


@register.filter
def has_scope(user: Any, scope: str) -> bool:
    """Whether ``user`` holds ``scope`` through their roles (pages show only what they may use)."""
    return scope in user_scopes(user)
