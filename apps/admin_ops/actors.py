"""Who did something: a person, an API key, a model tier acting through a key, or the system.

Every audit event and change request names its actor. Transports know the actor (the signed-in
person, the DRF key, the MCP caller) and pass it; code far from a request (key creation called
from a command, a job submitted by a service) falls back to the actor the current request set
through :func:`actor_context`, then to ``system``.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from apps.security.models import ApiKey


@dataclass(frozen=True)
class Actor:
    """The identity behind an action. ``person`` is who answers for it: the user, or the owner
    of the key a program or a model tier used."""

    user: Any = None
    key: ApiKey | None = None
    tier: str = ""
    system: str = ""

    @property
    def kind(self) -> str:
        if self.tier:
            return "tier"
        if self.key is not None:
            return "api_key"
        if self.user is not None:
            return "user"
        return "system"

    @property
    def person(self) -> Any:
        if self.user is not None:
            return self.user
        return self.key.owner if self.key is not None else None

    @property
    def label(self) -> str:
        if self.key is not None:
            base = f"key:{self.key.name} (bb_{self.key.prefix}_…)"
            return f"{self.tier} via {base}" if self.tier else base
        if self.user is not None:
            return str(self.user.get_username())
        return f"system:{self.system or 'bodybroker'}"


SYSTEM = Actor(system="bodybroker")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("bb_request_id", default="")
_actor: contextvars.ContextVar[Any] = contextvars.ContextVar("bb_actor", default=None)


def actor_for(*, user: Any = None, key: ApiKey | None = None, tier: str = "") -> Actor:
    """An actor from what a transport knows; an anonymous user counts as nobody."""
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    if user is not None and not getattr(user, "pk", None):
        user = None  # an ApiKeyPrincipal or similar stand-in: the key is the identity
    return Actor(user=user, key=key, tier=tier or "")


def request_actor(request: Any) -> Actor:
    """The actor behind a DRF request: the key (with its owner as the person), or the user."""
    key = getattr(request, "auth", None)
    if isinstance(key, ApiKey):
        return Actor(key=key)
    return actor_for(user=request.user)


def current_request_id() -> str:
    return _request_id.get()


def current_actor() -> Actor | None:
    """The actor the current request set, resolved now (it may be lazy, e.g. a request.user)."""
    value = _actor.get()
    if value is None:
        return None
    if callable(value) and not isinstance(value, Actor):
        value = value()
    return value if isinstance(value, Actor) else None


@contextmanager
def actor_context(*, actor: Any = None, request_id: str = "") -> Iterator[str]:
    """Set the request id (a new one if empty) and the fallback actor for the block.

    ``actor`` may be an :class:`Actor` or a zero-argument callable returning one, so a
    middleware can defer touching ``request.user`` until something is actually audited.
    """
    rid = request_id or uuid.uuid4().hex
    token_id = _request_id.set(rid)
    token_actor = _actor.set(actor)
    try:
        yield rid
    finally:
        _request_id.reset(token_id)
        _actor.reset(token_actor)
