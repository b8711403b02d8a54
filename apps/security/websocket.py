"""Websocket authentication: an API key (header or ``?api_key=``) or the browser's session.

Sets ``scope["api_key"]`` (or None) and ``scope["scopes"]`` for the consumers behind it; the
session user arrives through Channels' own ``AuthMiddlewareStack`` as ``scope["user"]``.

A session cookie counts only when the ``Origin`` is one of ALLOWED_HOSTS (a page elsewhere must
not ride a writer's cookie); an API key needs no Origin, since game clients send none.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator

from apps.security.models import ApiKey
from apps.security.selectors import api_key_authenticate, raw_key_from_headers, user_scopes


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
