"""Writes for identity and access: API keys and roles."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from apps.security.models import ApiKey
from apps.security.scopes import ROLES, parse_scopes

logger = logging.getLogger(__name__)

KEY_PREFIX_BYTES = 6  # 12 hex characters: public, unique, finds the row
KEY_SECRET_BYTES = 24  # 192 bits of secret


def digest_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


@transaction.atomic
def api_key_create(
    *,
    name: str,
    scopes: str | Iterable[str],
    owner: Any = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    daily_budget_usd: float | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw secret, which is never stored nor shown again.

    Limits left ``None`` follow the deployment's defaults (``BODYBROKER_DEFAULT_*``). Raises
    ``UnknownScopeError`` for a scope outside ``ALL_SCOPES`` and ``ValueError`` for an empty
    name or a negative limit. Locks nothing; the unique prefix guards against the
    (astronomically unlikely) collision. Emits an ``api_key.create`` audit event.
    """
    name = name.strip()
    if not name:
        raise ValueError("an API key needs a name")
    parsed = parse_scopes(scopes)
    limits = {
        "requests_per_minute": requests_per_minute,
        "tokens_per_minute": tokens_per_minute,
        "daily_budget_usd": daily_budget_usd,
    }
    negative = sorted(limit for limit, value in limits.items() if value is not None and value < 0)
    if negative:
        raise ValueError(f"limits are 0 or more: {', '.join(negative)}")
    prefix = secrets.token_hex(KEY_PREFIX_BYTES)
    raw_key = f"bb_{prefix}_{secrets.token_urlsafe(KEY_SECRET_BYTES)}"
    key = ApiKey.objects.create(
        name=name,
        prefix=prefix,
        digest=digest_key(raw_key),
        scopes=list(parsed),
        owner=owner,
        **limits,
    )
    from apps.admin_ops.services import audit_api_key

    audit_api_key(key=key, action="api_key.create")
    return key, raw_key


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key; it stops authenticating at once, and the websockets opened with it are
    closed once the revocation is committed. Revoking twice keeps the first time."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        from apps.admin_ops.services import audit_api_key

        audit_api_key(key=key, action="api_key.revoke")
        prefix = key.prefix
        transaction.on_commit(lambda: _close_sockets_of(prefix))
    return key


# What a key's settings are; everything else about a key (prefix, digest, when it was created,
# used or revoked) is history and never edited.
KEY_SETTINGS = (
    "name",
    "scopes",
    "owner",
    "requests_per_minute",
    "tokens_per_minute",
    "daily_budget_usd",
)


class RevokedKeyError(ValueError):
    """A change to a revoked key: it stays as it was when it was revoked."""


def _setting(key: ApiKey, name: str) -> Any:
    if name == "owner":
        return key.owner.get_username() if key.owner_id and key.owner else None
    if name == "scopes":
        return list(key.scopes)
    return getattr(key, name)


def api_key_change(*, key_id: int, changes: dict[str, Any], actor: Any = None) -> ApiKey:
    """Change a key's settings (name, scopes, owner, limits); the one way they change.

    Raises ``UnknownScopeError`` for a bad scope, ``ValueError`` for an empty name or an unknown
    setting and ``RevokedKeyError`` for a revoked key. Locks the key's row (SELECT … FOR
    UPDATE). Emits an ``api_key.change`` audit event by ``actor`` (default: the current
    request's) with the changed settings before and after; when nothing changes, nothing is
    written. This process's gateway forgets its cached keys on commit (others within
    ``keycache.TTL_S``).
    """
    unknown = sorted(set(changes) - set(KEY_SETTINGS))
    if unknown:
        raise ValueError(f"not a setting of an API key: {', '.join(unknown)}")
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key_id)
        if key.revoked_at is not None:
            raise RevokedKeyError(f"key {key.prefix} is revoked; it stays as it was")
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "scopes":
                value = list(parse_scopes(value))
            elif name == "name":
                value = str(value).strip()
                if not value:
                    raise ValueError("an API key needs a name")
            old = _setting(key, name)
            setattr(key, name, value)
            new = _setting(key, name)
            if new != old:
                before[name], after[name] = old, new
        if not after:
            return key
        key.save(update_fields=list(after))
        from apps.admin_ops.services import audit_record

        audit_record(
            action="api_key.change",
            target=f"api_key:{key.prefix}",
            actor=actor,
            before=before,
            after=after,
            summary=f"{key.name}: {', '.join(sorted(after))} changed",
        )
        transaction.on_commit(_forget_cached_keys)
    return key


def _forget_cached_keys() -> None:
    from apps.security import keycache

    keycache.forget_all()


def _close_sockets_of(prefix: str) -> None:
    """Tell every process on the channel layer to close the sockets opened with this key."""
    from apps.security import keycache  # both import this module's digest_key
    from apps.security.websocket import api_key_group

    keycache.forget_all()  # this process's gateway stops accepting it at once too
    try:
        async_to_sync(get_channel_layer().group_send)(
            api_key_group(prefix), {"type": "api_key.revoked"}
        )
    except Exception:  # the key is revoked either way; its open sockets are what is at stake
        logger.exception("closing the websockets of revoked key %s failed", prefix)


def roles_ensure() -> list[Group]:
    """Create the role groups (writer, editor, admin, operator) if they are missing."""
    return [Group.objects.get_or_create(name=role)[0] for role in ROLES]
