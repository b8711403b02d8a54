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
    *, name: str, scopes: str | Iterable[str], owner: Any = None
) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw secret, which is never stored nor shown again.

    Raises ``UnknownScopeError`` for a scope outside ``ALL_SCOPES`` and ``ValueError`` for an empty
    name. Locks nothing; the unique prefix guards against the (astronomically unlikely) collision.
    """
    name = name.strip()
    if not name:
        raise ValueError("an API key needs a name")
    parsed = parse_scopes(scopes)
    prefix = secrets.token_hex(KEY_PREFIX_BYTES)
    raw_key = f"bb_{prefix}_{secrets.token_urlsafe(KEY_SECRET_BYTES)}"
    key = ApiKey.objects.create(
        name=name, prefix=prefix, digest=digest_key(raw_key), scopes=list(parsed), owner=owner
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
