"""Redis when ``REDIS_URL`` is set, else a store of this process: one factory for every store
that has both (the NPCs' live store, the router's caches, the rate-limit counters).

``redis_or_local(local, make_redis, namespace)`` returns the function callers use to get the
store. Without ``REDIS_URL`` it returns ``local``. With it, it returns the store ``make_redis``
built around a ``redis.asyncio`` client for the running event loop: a client's connections belong
to the loop that opened them and fail when awaited from another (each ``async_to_sync`` call, each
test, has its own loop), so every loop gets its own client, forgotten with the loop. Keys start
with the cache's ``KEY_PREFIX`` and the store's namespace, so stores and deployments sharing one
Redis never meet.

The store is looked up on every call (a game frame, a cached answer, a rate limit): the returned
function does no more than a settings read and one dictionary lookup.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from django.conf import settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

Local = TypeVar("Local")
Shared = TypeVar("Shared")


def redis_or_local(
    local: Local, make_redis: Callable[[Redis, str], Shared], namespace: str
) -> Callable[[], Local | Shared]:
    """The getter of a store: ``make_redis(client, "<KEY_PREFIX>:<namespace>")`` once per event
    loop when ``REDIS_URL`` is set, else ``local``. Call the getter inside a running loop."""
    per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Shared] = (
        weakref.WeakKeyDictionary()
    )

    def current() -> Local | Shared:
        if not settings.REDIS_URL:
            return local
        loop = asyncio.get_running_loop()
        found = per_loop.get(loop)
        if found is None:
            import redis.asyncio as redis  # only deployments with Redis load its client

            prefix = f"{settings.CACHES['default'].get('KEY_PREFIX', 'bb')}:{namespace}"
            found = per_loop[loop] = make_redis(redis.Redis.from_url(settings.REDIS_URL), prefix)
        return found

    return current
