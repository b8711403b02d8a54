"""Websocket authentication: an API key (header or ``?api_key=``) or the browser's session.

Sets ``scope["api_key"]`` (or None) and ``scope["scopes"]`` for the consumers behind it; the
session user arrives through Channels' own ``AuthMiddlewareStack`` as ``scope["user"]``.

A session cookie counts only when the ``Origin`` is one of ALLOWED_HOSTS (a page elsewhere must
not ride a writer's cookie); an API key needs no Origin, since game clients send none.

A socket opened with a key is closed when the key is revoked (:class:`KeyBoundConsumer`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator

from apps.security.models import ApiKey
from apps.security.selectors import api_key_authenticate, raw_key_from_headers, user_scopes
from npc_runtime.protocol import KEY_REVOKED, KEY_REVOKED_CLOSE_CODE


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }


def _raw_key(scope: dict[str, Any], headers: dict[str, str]) -> str | None:
    raw = raw_key_from_headers(headers)
    if raw:
        return raw
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("api_key")
    return values[0] if values else None


def _origin_allowed(headers: dict[str, str]) -> bool:
    origin = headers.get("origin")
    if not origin:
        return False
    validator = AllowedHostsOriginValidator(None)
    return bool(validator.valid_origin(urlparse(origin.lower())))


@database_sync_to_async
def _resolve(raw: str | None, user: Any) -> tuple[ApiKey | None, frozenset[str]]:
    if raw:
        key = api_key_authenticate(raw)
        return key, frozenset(key.scopes) if key else frozenset()
    return None, user_scopes(user)


class ApiKeyMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = _headers(scope)
        raw = _raw_key(scope, headers)
        if raw is None and not _origin_allowed(headers):
            key, scopes = None, frozenset[str]()
        else:
            key, scopes = await _resolve(raw, scope.get("user"))
        scope = dict(scope, api_key=key, scopes=scopes)
        return await super().__call__(scope, receive, send)


def ApiKeyOrSessionAuthStack(inner: Any) -> Any:  # noqa: N802 (named like Channels' stacks)
    return AuthMiddlewareStack(ApiKeyMiddleware(inner))


def api_key_group(prefix: str) -> str:
    """The channel-layer group of the sockets opened with the key whose prefix this is."""
    return f"api-key.{prefix}"


class KeyBoundConsumer(AsyncWebsocketConsumer):
    """A websocket consumer behind :class:`ApiKeyMiddleware` whose sockets opened with an API
    key end with it: revoking the key (``apps.security.services.api_key_revoke``, from any
    process sharing the channel layer) sends each of them an ``error`` frame ``key_revoked`` and
    closes it with code 4401. Subclasses call :meth:`follow_key` once the socket is allowed
    in and :meth:`unfollow_key` when it disconnects."""

    key_group: str | None = None

    async def follow_key(self) -> None:
        key = self.scope.get("api_key")
        if key is not None:
            self.key_group = api_key_group(key.prefix)
            await self.channel_layer.group_add(self.key_group, self.channel_name)

    async def unfollow_key(self) -> None:
        if self.key_group is not None:
            await self.channel_layer.group_discard(self.key_group, self.channel_name)
            self.key_group = None

    async def api_key_revoked(self, event: dict[str, Any]) -> None:
        error = {"type": "error", "code": KEY_REVOKED, "message": "this API key was revoked"}
        await self.send(text_data=json.dumps({**error, "ref": None}))
        await self.close(code=KEY_REVOKED_CLOSE_CODE)
