"""DRF authentication and permissions: API keys (bearer) or a browser session, plus scopes."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.security.models import ApiKey
from apps.security.selectors import api_key_authenticate, raw_key_from_headers, user_scopes


class ApiKeyPrincipal:
    """The caller behind an API key, shaped enough like a user for DRF and templates."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, key: ApiKey) -> None:
        self.key = key
        self.username = f"key:{key.name}"

    def __str__(self) -> str:
        return self.username


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer bb_…`` or ``X-API-Key: bb_…``. A wrong key is a 401, not a pass."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        raw = raw_key_from_headers(request.headers)
        if raw is None:
            return None
        key = api_key_authenticate(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("invalid or revoked API key")
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="bodybroker"'


def caller_scopes(request: Request) -> frozenset[str]:
    """The scopes of whoever made this request: the key's, or the person's roles'."""
    if isinstance(request.auth, ApiKey):
        return frozenset(request.auth.scopes)
    return user_scopes(request.user)


def scope_required(scope: str) -> type[BasePermission]:
    """A permission class that lets through callers holding ``scope``."""

    class HasScope(BasePermission):
        message = f"this action needs the '{scope}' scope"

        def has_permission(self, request: Request, view: Any) -> bool:
            if not (request.user and request.user.is_authenticated):
                return False
            return scope in caller_scopes(request)

    HasScope.__name__ = f"HasScope_{scope}"
    return HasScope
