"""Live NPC data shared by the game websocket and the intent updater: the latest state each game
client sent, which NPCs are being watched, and the current intent of each.

Two stores behind one interface. With ``REDIS_URL`` set it is Redis, so any number of web
processes and updater shards share it (intents expire after their TTL, 2 s by default). On the
embedded default it lives in the web process, and the updater runs inside that process too (see
``apps.npcs.updater``): the embedded cache and channel layer are per process by design.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from django.conf import settings

from bodybroker.redis_clients import redis_or_local

if TYPE_CHECKING:
    from redis.asyncio import Redis

ACTIVE_WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class LiveState:
    state: dict[str, Any]
    version: int


class LiveStore(Protocol):
    async def put_states(self, states: dict[str, dict[str, Any]]) -> None: ...

    async def get_state(self, npc_id: str) -> LiveState | None: ...

    async def get_states(self, npc_ids: list[str]) -> list[LiveState | None]: ...

    async def touch(self, npc_id: str) -> None: ...

    async def active(self, within_s: float = ACTIVE_WINDOW_S) -> list[str]: ...

    async def put_intents(self, intents: list[dict[str, Any]]) -> None: ...

    async def get_intent(self, npc_id: str) -> dict[str, Any] | None: ...

    async def put_prediction(self, npc_id: str, value: dict[str, Any], ttl_ms: int) -> None: ...

    async def get_prediction(self, npc_id: str) -> dict[str, Any] | None: ...

    async def clear(self) -> None: ...


class LocalLiveStore:
    """The embedded default: dicts in this process."""

    def __init__(self) -> None:
        self.states: dict[str, LiveState] = {}
        self.seen: dict[str, float] = {}
        self.intents: dict[str, tuple[float, dict[str, Any]]] = {}
        self.predictions: dict[str, tuple[float, dict[str, Any]]] = {}

    async def put_states(self, states: dict[str, dict[str, Any]]) -> None:
        now = time.monotonic()
        for npc_id, state in states.items():
            previous = self.states.get(npc_id)
            self.states[npc_id] = LiveState(state, (previous.version if previous else 0) + 1)
            self.seen[npc_id] = now

    async def get_state(self, npc_id: str) -> LiveState | None:
        return self.states.get(npc_id)

    async def get_states(self, npc_ids: list[str]) -> list[LiveState | None]:
        return [self.states.get(npc_id) for npc_id in npc_ids]

    async def touch(self, npc_id: str) -> None:
        self.seen[npc_id] = time.monotonic()

    async def active(self, within_s: float = ACTIVE_WINDOW_S) -> list[str]:
        cutoff = time.monotonic() - within_s
        return [npc_id for npc_id, at in self.seen.items() if at >= cutoff]

    async def put_intents(self, intents: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        for intent in intents:
            self.intents[intent["npc_id"]] = (now + intent["ttl_ms"] / 1000, intent)

    async def get_intent(self, npc_id: str) -> dict[str, Any] | None:
        return _fresh(self.intents.get(npc_id))

    async def put_prediction(self, npc_id: str, value: dict[str, Any], ttl_ms: int) -> None:
        self.predictions[npc_id] = (time.monotonic() + ttl_ms / 1000, value)

    async def get_prediction(self, npc_id: str) -> dict[str, Any] | None:
        return _fresh(self.predictions.get(npc_id))

    async def clear(self) -> None:
        self.states.clear()
        self.seen.clear()
        self.intents.clear()
        self.predictions.clear()


def _fresh(entry: tuple[float, dict[str, Any]] | None) -> dict[str, Any] | None:
    if entry is None or entry[0] < time.monotonic():
        return None
    return entry[1]


# One round trip and one command for any number of states: the clock gives this write's
# version, each state is stored as "<version>|<json>", and each NPC is marked seen.
# KEYS: states hash, active zset, clock; ARGV: now, then npc_id, json pairs.
_PUT_STATES = """
local version = redis.call('INCR', KEYS[3])
for i = 2, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], version .. '|' .. ARGV[i + 1])
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
end
return version
"""


def _live_state(raw: bytes | str | None) -> LiveState | None:
    if raw is None:
        return None
    version, _, state = (raw.decode() if isinstance(raw, bytes) else raw).partition("|")
    return LiveState(orjson.loads(state), int(version))


class RedisLiveStore:
    """Shared by every process: ``<p>:states`` (a hash of NPC id → version and JSON),
    ``<p>:active`` (sorted set of last-seen times), ``<p>:intent:<id>`` (JSON with a TTL).

    Versions come from one counter, ``<p>:clock``: every write of an NPC's state gives it a
    larger version than it had, which is all the intent updater compares.
    """

    def __init__(self, client: Redis, prefix: str) -> None:
        self._redis = client
        self._p = prefix
        self._put_states = self._redis.register_script(_PUT_STATES)
        self._keys = [f"{prefix}:states", f"{prefix}:active", f"{prefix}:clock"]

    async def put_states(self, states: dict[str, dict[str, Any]]) -> None:
        """Many states in one command (the web writes each socket's states every 100 ms)."""
        args: list[Any] = [time.time()]
        for npc_id, state in states.items():
            args += (npc_id, orjson.dumps(state))
        await self._put_states(self._keys, args)

    async def get_state(self, npc_id: str) -> LiveState | None:
        return _live_state(await self._redis.hget(self._keys[0], npc_id))

    async def get_states(self, npc_ids: list[str]) -> list[LiveState | None]:
        if not npc_ids:
            return []
        return [_live_state(raw) for raw in await self._redis.hmget(self._keys[0], npc_ids)]

    async def touch(self, npc_id: str) -> None:
        await self._redis.zadd(f"{self._p}:active", {npc_id: time.time()})

    async def active(self, within_s: float = ACTIVE_WINDOW_S) -> list[str]:
        names = await self._redis.zrangebyscore(f"{self._p}:active", time.time() - within_s, "+inf")
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    async def put_intents(self, intents: list[dict[str, Any]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for intent in intents:
                key = f"{self._p}:intent:{intent['npc_id']}"
                pipe.set(key, orjson.dumps(intent), px=intent["ttl_ms"])
            await pipe.execute()

    async def get_intent(self, npc_id: str) -> dict[str, Any] | None:
        raw = await self._redis.get(f"{self._p}:intent:{npc_id}")
        return None if raw is None else dict(orjson.loads(raw))

    async def put_prediction(self, npc_id: str, value: dict[str, Any], ttl_ms: int) -> None:
        await self._redis.set(f"{self._p}:prediction:{npc_id}", orjson.dumps(value), px=ttl_ms)

    async def get_prediction(self, npc_id: str) -> dict[str, Any] | None:
        raw = await self._redis.get(f"{self._p}:prediction:{npc_id}")
        return None if raw is None else dict(orjson.loads(raw))

    async def clear(self) -> None:
        async for name in self._redis.scan_iter(f"{self._p}:*"):
            await self._redis.delete(name)


_local = LocalLiveStore()
# Redis when ``REDIS_URL`` is set, else this process's store.
live_store: Callable[[], LiveStore] = redis_or_local(_local, RedisLiveStore, "npc")


def intent_group(npc_id: str) -> str:
    """The channel-layer group that carries an NPC's pushed intents.

    NPCs share ``BODYBROKER_INTENT_PUSH_GROUPS`` groups (by a hash of the id) rather than
    having one each: the updater sends one message per group per pass, with every intent of
    that pass for the group's NPCs, and each game socket keeps those of its own NPCs. One
    group per NPC cost three Redis round trips per intent, which at 1,000 NPCs was more than
    the updater could send.
    """
    return f"npc-intents.{zlib.crc32(npc_id.encode()) % settings.BODYBROKER_INTENT_PUSH_GROUPS}"
