"""Reads for identity and access: who is calling, and with which scopes."""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Any

from django.db.models import F, QuerySet
from django.utils import timezone

from apps.security.models import ApiKey
from apps.security.scopes import scopes_for_roles
from apps.security.services import digest_key

LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The active key for ``raw_key``, or None. Constant-time comparison of the digest.

    ``last_used_at`` is refreshed at most once a minute so busy keys don't write on every call.
    """
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != "bb" or not parts[1] or not parts[2]:
        return None
    key = ApiKey.objects.filter(prefix=parts[1], revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.digest, digest_key(raw_key)):
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def raw_key_from_headers(headers: Any) -> str | None:
    """The key from ``Authorization: Bearer …`` or ``X-API-Key`` in a mapping of header names."""
    auth = headers.get("authorization") or headers.get("Authorization") or ""
    if auth[:7].lower() == "bearer ":
        return str(auth[7:].strip()) or None
    key = headers.get("x-api-key") or headers.get("X-Api-Key") or headers.get("X-API-Key")
    return str(key).strip() if key else None


def user_scopes(user: Any) -> frozenset[str]:
    """Scopes a signed-in person has through their role groups (all of them for superusers)."""
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached: frozenset[str] | None = getattr(user, "_bodybroker_scopes", None)
    if cached is None:
        names = list(user.groups.values_list("name", flat=True))
        cached = scopes_for_roles(names, is_superuser=user.is_superuser)
        user._bodybroker_scopes = cached
    return cached


def api_keys() -> QuerySet[ApiKey]:
    """Every key, live ones first, newest first, with its owner loaded (the keys page)."""
    return ApiKey.objects.select_related("owner").order_by(
        F("revoked_at").asc(nulls_first=True), "-created_at"
    )


def api_key(*, key_id: int) -> ApiKey | None:
    return ApiKey.objects.select_related("owner").filter(pk=key_id).first()
