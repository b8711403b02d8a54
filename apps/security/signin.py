"""Sign-in throttling: failed sign-ins counted per username and per client address.

Fixed windows of ``BODYBROKER_SIGNIN_WINDOW_S``: once a username has
``BODYBROKER_SIGNIN_FAILURES_PER_USERNAME`` failures in the current window, or an address
``BODYBROKER_SIGNIN_FAILURES_PER_ADDRESS``, sign-ins for it are refused without checking the
password until the window ends (the login page answers 429 with ``Retry-After``). Per username
stops guessing one person's password from many addresses; per address stops one client trying
many usernames. A correct password clears its username's count, never the address's.

Counters live in Django's cache: Redis when ``REDIS_URL`` is set (shared by every web
process), else this process's memory. Reaching a limit is audited once per window
(``auth.login_throttled``); each failure before it already is (``auth.login_failed``), and
refused attempts are not, so a flood cannot fill the audit log.

The client address is ``REMOTE_ADDR``: behind a proxy, let the server set it from the proxy's
header (uvicorn's ``--proxy-headers`` with ``--forwarded-allow-ips``).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class SignInRefusal:
    """Why sign-ins are refused for now, and for how many more seconds."""

    message: str
    retry_after_s: int


def client_address(request: Any) -> str:
    return str(getattr(request, "META", {}).get("REMOTE_ADDR") or "unknown")


def _window() -> tuple[int, int]:
    """(the current window's number, seconds left in it)."""
    size = settings.BODYBROKER_SIGNIN_WINDOW_S
    now = time.time()
    return int(now // size), max(1, size - int(now % size))


def _keys(username: str, address: str, window: int) -> tuple[str, str]:
    # Hashed: usernames are free text, and the cache key must stay short and safe.
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    where = hashlib.sha256(address.encode()).hexdigest()[:32]
    return f"signin:user:{name}:{window}", f"signin:addr:{where}:{window}"


def signin_refusal(*, username: str, address: str) -> SignInRefusal | None:
    """A refusal when the username or the address is over its limit in this window."""
    window, left_s = _window()
    user_key, addr_key = _keys(username, address, window)
    counts = cache.get_many([user_key, addr_key])
    minutes = max(1, round(left_s / 60))
    wait = f"try again in {minutes} minute{'s' if minutes != 1 else ''}"
    if counts.get(user_key, 0) >= settings.BODYBROKER_SIGNIN_FAILURES_PER_USERNAME:
        return SignInRefusal(f"Too many failed sign-ins for this username; {wait}.", left_s)
    if counts.get(addr_key, 0) >= settings.BODYBROKER_SIGNIN_FAILURES_PER_ADDRESS:
        return SignInRefusal(f"Too many failed sign-ins from your address; {wait}.", left_s)
    return None


def _count(key: str) -> int:
    # add() then incr(): atomic on Redis, so processes sharing it never lose a failure.
    cache.add(key, 0, timeout=settings.BODYBROKER_SIGNIN_WINDOW_S + 5)
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between the two calls: this failure opens a new count
        cache.add(key, 1, timeout=settings.BODYBROKER_SIGNIN_WINDOW_S + 5)
        return 1


def signin_failed(*, username: str, address: str) -> None:
    """Count a failed sign-in; audit the moment the username or the address reaches its limit."""
    window, left_s = _window()
    user_key, addr_key = _keys(username, address, window)
    per_user = settings.BODYBROKER_SIGNIN_FAILURES_PER_USERNAME
    per_address = settings.BODYBROKER_SIGNIN_FAILURES_PER_ADDRESS
    if _count(user_key) == per_user:
        _audit(f"user:{username.strip()[:150]}", per_user, left_s, address)
    if _count(addr_key) == per_address:
        _audit(f"address:{address}", per_address, left_s, address)


def signin_succeeded(*, username: str) -> None:
    """A correct password clears its username's count (the address's stays)."""
    window, _ = _window()
    user_key, _ = _keys(username, "", window)
    cache.delete(user_key)


def _audit(target: str, limit: int, left_s: int, address: str) -> None:
    from apps.admin_ops.actors import Actor
    from apps.admin_ops.services import audit_record

    audit_record(
        action="auth.login_throttled",
        target=target,
        actor=Actor(system="login form"),
        after={"failures": limit, "refused_for_s": left_s, "address": address},
        summary=f"{limit} failed sign-ins; refused for {left_s} s",
    )


def signin_counts_clear(
    *, usernames: tuple[str, ...] = (), addresses: tuple[str, ...] = ()
) -> None:
    """Forget this window's failures of these usernames and addresses (an operator unlocking
    someone, and tests, whose cache outlives each test)."""
    window, _ = _window()
    keys = [_keys(name, "", window)[0] for name in usernames]
    keys += [_keys("", address, window)[1] for address in addresses]
    cache.delete_many(keys)
