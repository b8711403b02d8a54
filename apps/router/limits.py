"""Per-key rate limits (requests and tokens per minute) and daily budgets.

Fixed one-minute windows: a key's requests and tokens are counted in the current UTC minute;
past a limit the answer is 429 with ``Retry-After`` = seconds left in the minute. Tokens are
counted after the answer (their number is unknown before), so a key can overshoot its token
limit by one request; requests are counted before. A daily budget compares the key's cost today
(tier price table) with ``daily_budget_usd``.

Counters live in Redis when ``REDIS_URL`` is set (shared by every web process), else in this
process. The day's cost is seeded from ``UsageDaily`` the first time a key is seen on a day, so
a restart does not reset a budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from bodybroker.redis_clients import redis_or_local

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int  # 0 = no limit
    tokens_per_minute: int
    daily_budget_usd: float | None

    @property
    def any(self) -> bool:
        return bool(self.requests_per_minute or self.tokens_per_minute or self.daily_budget_usd)


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: str  # "requests" | "tokens" | "budget"
    message: str
    retry_after_s: int


def limits_for(key: Any) -> Limits:
    return Limits(
        requests_per_minute=key.requests_per_minute
        if key.requests_per_minute is not None
        else settings.BODYBROKER_DEFAULT_RPM,
        tokens_per_minute=key.tokens_per_minute
        if key.tokens_per_minute is not None
        else settings.BODYBROKER_DEFAULT_TPM,
        daily_budget_usd=key.daily_budget_usd
        if key.daily_budget_usd is not None
        else settings.BODYBROKER_DEFAULT_DAILY_BUDGET_USD or None,
    )


def _spent_today_in_db(key_id: int) -> float:
    from apps.router.models import UsageDaily

    total = UsageDaily.objects.filter(key_id=key_id, day=timezone.now().date()).aggregate(
        s=Sum("cost_usd")
    )["s"]
    return float(total or 0.0)


class LocalCounters:
    def __init__(self) -> None:
        self.minute: dict[int, tuple[int, int, int]] = {}  # key → (minute, requests, tokens)
        self.spent: dict[tuple[int, str], float] = {}

    async def hit(self, key_id: int, minute: int) -> tuple[int, int]:
        current = self.minute.get(key_id)
        if current is None or current[0] != minute:
            current = (minute, 0, 0)
        current = (minute, current[1] + 1, current[2])
        self.minute[key_id] = current
        return current[1], current[2]

    async def add_tokens(self, key_id: int, minute: int, tokens: int) -> None:
        current = self.minute.get(key_id)
        if current is not None and current[0] == minute:
            self.minute[key_id] = (minute, current[1], current[2] + tokens)

    async def spent_today(self, key_id: int, day: str) -> float:
        found = self.spent.get((key_id, day))
        if found is None:
            found = self.spent[(key_id, day)] = await sync_to_async(
                _spent_today_in_db, thread_sensitive=False
            )(key_id)
        return found

    async def add_cost(self, key_id: int, day: str, cost: float) -> None:
        self.spent[(key_id, day)] = await self.spent_today(key_id, day) + cost


class RedisCounters:
    def __init__(self, client: Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    async def hit(self, key_id: int, minute: int) -> tuple[int, int]:
        base = f"{self._prefix}:{key_id}:{minute}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(f"{base}:r")
            pipe.expire(f"{base}:r", 120)
            pipe.get(f"{base}:t")
            requests, _, tokens = await pipe.execute()
        return int(requests), int(tokens or 0)

    async def add_tokens(self, key_id: int, minute: int, tokens: int) -> None:
        name = f"{self._prefix}:{key_id}:{minute}:t"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incrby(name, tokens)
            pipe.expire(name, 120)
            await pipe.execute()

    async def spent_today(self, key_id: int, day: str) -> float:
        name = f"{self._prefix}:{key_id}:{day}:usd"
        raw = await self._redis.get(name)
        if raw is None:
            seeded = await sync_to_async(_spent_today_in_db, thread_sensitive=False)(key_id)
            await self._redis.set(name, repr(seeded), ex=2 * 86400, nx=True)
            raw = await self._redis.get(name)
        return float(raw or 0.0)

    async def add_cost(self, key_id: int, day: str, cost: float) -> None:
        name = f"{self._prefix}:{key_id}:{day}:usd"
        await self.spent_today(key_id, day)
        await self._redis.incrbyfloat(name, cost)


_local = LocalCounters()
counters = redis_or_local(_local, RedisCounters, "limits")


_day_of_minute: tuple[int, str] = (-1, "")


def _now() -> tuple[int, str, int]:
    """(UTC minute number, UTC day, seconds left in the minute); the day is formatted once a
    minute, not once a request."""
    global _day_of_minute
    now = time.time()
    minute = int(now // 60)
    if _day_of_minute[0] != minute:
        _day_of_minute = (minute, time.strftime("%Y-%m-%d", time.gmtime(now)))
    return minute, _day_of_minute[1], 60 - int(now % 60)


async def check(key_id: int, limits: Limits) -> Refusal | None:
    """Count this request against the key's limits; a ``Refusal`` if it is over one."""
    if not limits.any:
        return None
    minute, day, left_s = _now()
    store = counters()
    requests, tokens = await store.hit(key_id, minute)
    if limits.requests_per_minute and requests > limits.requests_per_minute:
        return Refusal("requests", f"over {limits.requests_per_minute} requests per minute", left_s)
    if limits.tokens_per_minute and tokens >= limits.tokens_per_minute:
        return Refusal("tokens", f"over {limits.tokens_per_minute} tokens per minute", left_s)
    if limits.daily_budget_usd is not None:
        spent = await store.spent_today(key_id, day)
        if spent >= limits.daily_budget_usd:
            midnight = 86400 - int(time.time() % 86400)
            return Refusal(
                "budget",
                f"today's budget of ${limits.daily_budget_usd:.4f} is spent (${spent:.4f})",
                midnight,
            )
    return None


async def record(key_id: int, limits: Limits, *, tokens: int, cost_usd: float) -> None:
    """Count an answered request's tokens and cost."""
    if not limits.any:
        return
    minute, day, _ = _now()
    store = counters()
    if limits.tokens_per_minute:
        await store.add_tokens(key_id, minute, tokens)
    if limits.daily_budget_usd is not None:
        await store.add_cost(key_id, day, cost_usd)
