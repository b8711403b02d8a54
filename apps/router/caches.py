"""The router's caches, in one store with namespaces: process-local LRU, or Redis.

- ``resp:<tier>`` — the response cache: finished answers to *deterministic* requests (greedy
  decoding), keyed on the normalised request, at most ``BODYBROKER_RESPONSE_CACHE_SIZE`` entries
  per tier (least recently used evicted), ``BODYBROKER_RESPONSE_CACHE_TTL_S`` seconds.
- ``last:<tier>`` — the last good answer per NPC, persona or conversation: the fallback chains'
  "last good cached intent" (Gold) and "cached response" (Silver) links.
- ``lore`` — lore context for dialogue, five minutes.

With ``REDIS_URL`` every process shares one store (each namespace's LRU order kept in a sorted
set); without, each process has its own.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings

from apps.router.contracts import InferenceRequest
from bodybroker.redis_clients import redis_or_local

if TYPE_CHECKING:
    from redis.asyncio import Redis

LAST_GOOD_SIZE = 10_000
LAST_GOOD_TTL_S = 3600.0
LORE_TTL_S = 300.0


class Store(Protocol):
    async def get(self, namespace: str, key: str) -> dict[str, Any] | None: ...

    async def put(
        self, namespace: str, key: str, value: dict[str, Any], *, ttl_s: float, max_entries: int
    ) -> None: ...

    async def clear(self) -> None: ...


class LocalStore:
    """Per-process LRU with expiry; O(1) get and put."""

    def __init__(self) -> None:
        self._spaces: dict[str, OrderedDict[str, tuple[float, dict[str, Any]]]] = {}

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        space = self._spaces.get(namespace)
        if space is None:
            return None
        entry = space.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del space[key]
            return None
        space.move_to_end(key)
        return entry[1]

    async def put(
        self, namespace: str, key: str, value: dict[str, Any], *, ttl_s: float, max_entries: int
    ) -> None:
        space = self._spaces.setdefault(namespace, OrderedDict())
        space[key] = (time.monotonic() + ttl_s, value)
        space.move_to_end(key)
        while len(space) > max_entries:
            space.popitem(last=False)

    async def clear(self) -> None:
        self._spaces.clear()


class RedisStore:
    """Shared LRU: values under ``<prefix>:<ns>:<key>`` with a TTL, recency in ``<prefix>:<ns>``."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        raw = await self._redis.get(f"{self._prefix}:{namespace}:{key}")
        if raw is None:
            return None
        await self._redis.zadd(f"{self._prefix}:{namespace}", {key: time.time()})
        value: dict[str, Any] = json.loads(raw)
        return value

    async def put(
        self, namespace: str, key: str, value: dict[str, Any], *, ttl_s: float, max_entries: int
    ) -> None:
        index = f"{self._prefix}:{namespace}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(f"{index}:{key}", json.dumps(value), px=int(ttl_s * 1000))
            pipe.zadd(index, {key: time.time()})
            pipe.zcard(index)
            _, _, size = await pipe.execute()
        if size > max_entries:
            evicted = await self._redis.zpopmin(index, size - max_entries)
            if evicted:
                members = [
                    pair[0].decode() if isinstance(pair[0], bytes) else str(pair[0])
                    for pair in evicted
                ]
                await self._redis.delete(*(f"{index}:{member}" for member in members))

    async def clear(self) -> None:
        async for name in self._redis.scan_iter(f"{self._prefix}:*"):
            await self._redis.delete(name)


_local = LocalStore()
# The store for the running loop: Redis when ``REDIS_URL`` is set, else process-local.
store: Callable[[], Store] = redis_or_local(_local, RedisStore, "router")


def _digest(payload: Any) -> str:
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def _conversation(request: InferenceRequest) -> list[tuple[str, str]]:
    return [
        (str(m.get("role", "")), " ".join(str(m.get("content") or "").split()))
        for m in request.messages
    ]


def response_key(tier: str, request: InferenceRequest) -> str:
    """Everything that changes a greedy answer, normalised (whitespace, key order)."""
    return _digest(
        [
            tier,
            _conversation(request),
            request.max_tokens,
            request.stop,
            request.tools,
            request.tool_choice,
            request.response_format,
            request.seed,
            request.persona,
        ]
    )


def last_good_key(tier: str, request: InferenceRequest) -> str:
    """Gold remembers the last intent per NPC; otherwise per persona and conversation."""
    if tier == "gold" and request.npc_id:
        return f"npc:{request.npc_id}"
    return _digest([tier, request.persona, _conversation(request)])


async def response_get(tier: str, request: InferenceRequest) -> dict[str, Any] | None:
    if settings.BODYBROKER_RESPONSE_CACHE_SIZE <= 0:
        return None
    return await store().get(f"resp:{tier}", response_key(tier, request))


async def response_put(tier: str, request: InferenceRequest, value: dict[str, Any]) -> None:
    if settings.BODYBROKER_RESPONSE_CACHE_SIZE <= 0:
        return
    await store().put(
        f"resp:{tier}",
        response_key(tier, request),
        value,
        ttl_s=settings.BODYBROKER_RESPONSE_CACHE_TTL_S,
        max_entries=settings.BODYBROKER_RESPONSE_CACHE_SIZE,
    )


async def last_good_get(tier: str, request: InferenceRequest) -> dict[str, Any] | None:
    return await store().get(f"last:{tier}", last_good_key(tier, request))


async def last_good_put(tier: str, request: InferenceRequest, value: dict[str, Any]) -> None:
    await store().put(
        f"last:{tier}",
        last_good_key(tier, request),
        value,
        ttl_s=LAST_GOOD_TTL_S,
        max_entries=LAST_GOOD_SIZE,
    )


LoreProvider = Callable[[str | None, str], Awaitable[str]]
_lore_provider: LoreProvider | None = None


def register_lore_provider(provider: LoreProvider) -> None:
    """The story app registers its retrieval here: ``provider(persona, topic) -> context``."""
    global _lore_provider
    _lore_provider = provider


async def lore_context(persona: str | None, topic: str) -> str:
    """Lore the persona may know about ``topic``, cached five minutes; '' without a provider."""
    if _lore_provider is None:
        return ""
    key = _digest([persona, " ".join(topic.lower().split())])
    hit = await store().get("lore", key)
    if hit is not None:
        return str(hit["text"])
    text = await _lore_provider(persona, topic)
    await store().put("lore", key, {"text": text}, ttl_s=LORE_TTL_S, max_entries=5_000)
    return text
