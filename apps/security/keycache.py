"""API-key lookups for hot paths (the OpenAI-compatible gateway): cached for a few seconds.

A key's row is read once and then served from memory for ``TTL_S`` seconds, misses included, so
a flood of requests with a wrong key costs one query per few seconds, not one per request. The
price: revoking a key takes up to ``TTL_S`` to reach a gateway process (the process that revokes
it forgets its lookups at once).

Requests that miss together share one lookup: a gateway's first burst after start (and each
expiry under load) would otherwise send every waiting request to the database at once, each
in a worker thread of its own, and the first ones also write the key's ``last_used_at``.
"""

from __future__ import annotations

import asyncio
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


# The lookup in flight per (event loop, digest): its task belongs to that loop.
_pending: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Task[ApiKey | None]] = {}


async def _fill(raw: str, digest: str) -> ApiKey | None:
    now = time.monotonic()
    key = await sync_to_async(_lookup, thread_sensitive=False)(raw)
    if len(_cache) >= MAX_ENTRIES:
        _cache.clear()
    _cache[digest] = (now + TTL_S, key)
    return key


async def cached_api_key(raw: str) -> ApiKey | None:
    """The active key for ``raw`` (or None), at most ``TTL_S`` seconds stale."""
    digest = hashlib.sha256(raw.encode()).hexdigest()
    hit = _cache.get(digest)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    loop = asyncio.get_running_loop()
    slot = (loop, digest)
    task = _pending.get(slot)
    if task is None:
        task = loop.create_task(_fill(raw, digest))
        _pending[slot] = task
        task.add_done_callback(lambda _: _pending.pop(slot, None))
    # Shielded: a caller that leaves does not cancel the lookup the others wait for.
    return await asyncio.shield(task)


def forget_all() -> None:
    """Drop every cached lookup (after a revocation, and in tests)."""
    _cache.clear()
