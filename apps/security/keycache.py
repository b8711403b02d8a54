"""API-key lookups for hot paths (the OpenAI-compatible gateway): cached for a few seconds.

A key's row is read once and then served from memory for ``TTL_S`` seconds, misses included, so
a flood of requests with a wrong key costs one query per few seconds, not one per request. The
price: revoking a key takes up to ``TTL_S`` to reach a gateway process (the process that revokes
it forgets its lookups at once).
"""

from __future__ import annotations

import hashlib
import time

from asgiref.sync import sync_to_async

from apps.security.models import ApiKey
from apps.security.selectors import api_key_authenticate

TTL_S = 2.0
MAX_ENTRIES = 10_000
_cache: dict[str, tuple[float, ApiKey | None]] = {}


def _lookup(raw: str) -> ApiKey | None:
    return api_key_authenticate(raw)


async def cached_api_key(raw: str) -> ApiKey | None:
    """The active key for ``raw`` (or None), at most ``TTL_S`` seconds stale."""
    digest = hashlib.sha256(raw.encode()).hexdigest()
    now = time.monotonic()
    hit = _cache.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    key = await sync_to_async(_lookup, thread_sensitive=False)(raw)
    if len(_cache) >= MAX_ENTRIES:
        _cache.clear()
    _cache[digest] = (now + TTL_S, key)
    return key


def forget_all() -> None:
    """Drop every cached lookup (after a revocation, and in tests)."""
    _cache.clear()
