"""Tier endpoints: replicas, health, least-outstanding-requests balancing, priority isolation.

Each tier has a primary pool (its target model) and a fallback pool (its smaller model), each a
list of OpenAI-compatible endpoints from settings. An endpoint is picked among the healthy ones
with the fewest requests in flight. Real-time and background traffic get separate concurrency
limits per endpoint (the seed's 4 and 32), so a flood of background work waits in its own line
and never takes the slots real-time requests need.

Health is active (``PoolSet.check_health`` probes every endpoint; the gateway runs it every few
seconds) and passive (a connection error or 5xx marks the endpoint down for a back-off period; a
request after that period is the half-open probe). ``engine_health`` tells *down* from *busy* for
``/health/`` and the active checks alike: a CPU engine answers its probe only between
generations, so a probe that gets no answer in time means down only when the port refuses
connections too, or when the requests sent there failed since its last answer in a way no busy
engine fails (refused, reset, 5xx), or only timed out for longer than any one generation may take
(``hung_after_s``). A busy engine is still left out of rotation for a back-off, as before, so
real-time requests go to the next link instead of queueing behind a long generation.

State is per event loop — the semaphores and pooled clients belong to the loop that uses them —
and is rebuilt when the tier settings change.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from apps.router.policy import Priority, Tier
from inference.client import EngineClient, Timeouts, get_client
from inference.errors import EngineError, EngineHTTPError, EngineStalled, EngineTimeout

DOWN_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
EWMA_ALPHA = 0.2
ESTIMATE_TTL_S = 10.0  # latency estimates older than this are forgotten (see Endpoint.expected_ms)

EngineState = Literal["up", "busy", "down"]


@dataclass(eq=False)
class Endpoint:
    """One replica: where it is, how busy, how healthy, how fast."""

    url: str
    model: str
    engine: str | None
    realtime: asyncio.Semaphore
    background: asyncio.Semaphore
    outstanding: int = 0
    healthy: bool = True
    failures: int = 0
    retry_at: float = 0.0
    ms_per_token: float | None = None
    base_ms: float | None = None
    observed_at: float = 0.0
    answered_at: float = field(default_factory=time.monotonic)  # last sign of life
    failed_at: float = 0.0
    failed_hard_at: float = 0.0  # last failure a busy engine would not cause
    client: EngineClient | None = field(default=None, repr=False)

    def engine_client(self, timeouts: Timeouts) -> EngineClient:
        if self.client is None or self.client.closed:
            self.client = get_client(self.url, self.model, timeouts, engine=self.engine)
        return self.client

    def usable(self, now: float) -> bool:
        return self.healthy or now >= self.retry_at

    def mark_up(self) -> None:
        self.healthy, self.failures, self.retry_at = True, 0, 0.0
        self.answered_at = time.monotonic()

    def heard_from(self) -> None:
        """It answered something (a probe): alive, whatever the router makes of it."""
        self.answered_at = time.monotonic()

    def mark_down(self, now: float, *, hard: bool = True) -> None:
        self.failed_at = now
        if hard:
            self.failed_hard_at = now
        self.mark_busy(now)

    def mark_busy(self, now: float) -> None:
        """Out of rotation for a back-off; unlike ``mark_down``, no evidence that it is down."""
        self.failures += 1
        self.healthy = False
        self.retry_at = now + DOWN_BACKOFF_S[min(self.failures, len(DOWN_BACKOFF_S)) - 1]

    def record_failure(self, exc: EngineError) -> None:
        """A connection error, timeout, stall or 5xx counts against the endpoint; a 4xx (the
        request's fault) does not."""
        if not isinstance(exc, EngineHTTPError) or exc.retryable:
            # A timeout is what a busy engine causes too; refused, reset or 5xx it is not.
            hard = not isinstance(exc, EngineTimeout | EngineStalled)
            self.mark_down(time.monotonic(), hard=hard)

    def observe(self, latency_ms: float, completion_tokens: int) -> None:
        """Fold one answer's latency into the per-token and fixed-cost estimates.

        The first answer sets the fixed cost (prompt, network) to a fifth of its latency and the
        rest per token, so the estimate for that answer is its latency; later answers move the
        per-token cost (exponentially weighted).
        """
        tokens = max(completion_tokens, 1)
        self.observed_at = time.monotonic()
        if self.ms_per_token is None or self.base_ms is None:
            self.base_ms = latency_ms * 0.2
            self.ms_per_token = latency_ms * 0.8 / tokens
            return
        per_token = max(0.0, latency_ms - self.base_ms) / tokens
        self.ms_per_token += EWMA_ALPHA * (per_token - self.ms_per_token)

    def expected_ms(self, max_tokens: int) -> float | None:
        """How long ``max_tokens`` would take here, from what was measured recently; None when
        nothing was. An estimate older than ``ESTIMATE_TTL_S`` is no estimate: a pool skipped
        for a deadline gets no new measurements, so one slow moment (a cold engine, a busy
        machine) would otherwise keep it skipped for good."""
        if self.ms_per_token is None or time.monotonic() - self.observed_at > ESTIMATE_TTL_S:
            return None
        return (self.base_ms or 0.0) + self.ms_per_token * max_tokens


class NoEndpoint(Exception):
    """Every endpoint of the pool is down, or none frees a slot before the deadline."""


class TierPool:
    """The endpoints serving one link (target or fallback model) of one tier."""

    def __init__(self, tier: Tier, role: str, endpoints: list[Endpoint], timeouts: Timeouts):
        self.tier, self.role, self.endpoints, self.timeouts = tier, role, endpoints, timeouts
        self._next = 0

    def __repr__(self) -> str:
        return f"TierPool({self.tier}/{self.role}, {[e.url for e in self.endpoints]})"

    def pick(self) -> Endpoint | None:
        """The usable endpoint with the fewest requests in flight (round-robin among ties)."""
        now = time.monotonic()
        best: Endpoint | None = None
        count = len(self.endpoints)
        for offset in range(count):
            endpoint = self.endpoints[(self._next + offset) % count]
            if endpoint.usable(now) and (best is None or endpoint.outstanding < best.outstanding):
                best = endpoint
        self._next = (self._next + 1) % max(count, 1)
        return best

    def expected_ms(self, max_tokens: int) -> float | None:
        estimates = [e.expected_ms(max_tokens) for e in self.endpoints if e.healthy]
        known = [ms for ms in estimates if ms is not None]
        return min(known) if known else None

    def in_flight(self) -> int:
        return sum(e.outstanding for e in self.endpoints)

    @contextlib.asynccontextmanager
    async def slot(self, priority: Priority, wait_s: float | None) -> AsyncIterator[Endpoint]:
        """Hold a concurrency slot of ``priority`` on the best endpoint for one request."""
        endpoint = self.pick()
        if endpoint is None:
            raise NoEndpoint(f"{self.tier} {self.role}: every endpoint is down")
        semaphore = endpoint.realtime if priority == "realtime" else endpoint.background
        try:
            if semaphore.locked():
                async with asyncio.timeout(wait_s):
                    await semaphore.acquire()
            else:
                await semaphore.acquire()
        except TimeoutError:
            raise NoEndpoint(
                f"{self.tier} {self.role}: no {priority} slot free before the deadline"
            ) from None
        endpoint.outstanding += 1
        try:
            yield endpoint
        finally:
            endpoint.outstanding -= 1
            semaphore.release()


@dataclass
class PoolSet:
    """Every tier's primary and fallback pools on one event loop."""

    primary: dict[str, TierPool]
    fallback: dict[str, TierPool]

    def all_pools(self) -> list[TierPool]:
        return [*self.primary.values(), *self.fallback.values()]

    def endpoints_at(self, url: str) -> list[Endpoint]:
        """Every pool's endpoint for one engine URL (one engine often serves several links)."""
        return [e for pool in self.all_pools() for e in pool.endpoints if e.url == url]

    async def check_health(self) -> None:
        """Probe every engine once, concurrently, and mark its endpoints up, busy or down."""
        by_url: dict[str, tuple[TierPool, list[Endpoint]]] = {}
        for pool in self.all_pools():
            for endpoint in pool.endpoints:
                by_url.setdefault(endpoint.url, (pool, []))[1].append(endpoint)

        async def probe(pool: TierPool, endpoints: list[Endpoint]) -> None:
            client = endpoints[0].engine_client(pool.timeouts)
            found = await classify(client, endpoints)
            now = time.monotonic()
            for endpoint in endpoints:
                if found.state == "up":
                    endpoint.mark_up()
                elif found.state == "down" and found.evidence != "requests":
                    endpoint.mark_down(now)
                else:  # the probe went unanswered: its requests already told what they saw
                    endpoint.mark_busy(now)

        await asyncio.gather(*(probe(pool, found) for pool, found in by_url.values()))

    async def run_health_checks(self, interval_s: float) -> None:
        while True:
            await self.check_health()
            await asyncio.sleep(interval_s)


@dataclass(frozen=True, slots=True)
class EngineHealth:
    """One engine's state as ``/health/`` reports it.

    ``up``: it answered the probe. ``busy``: no answer in time, but its port accepts connections
    and its requests show nothing worse than timeouts; not a failure. ``down``: refused,
    answered with an error, or since its last answer a request was refused, reset or answered
    with a 5xx, or requests only timed out for longer than ``hung_after_s()``.
    ``evidence`` names what decided: the ``probe``, the ``port``, or the ``requests``.
    """

    state: EngineState
    detail: str
    latency_ms: float
    evidence: Literal["probe", "port", "requests"] = "probe"

    @property
    def ok(self) -> bool:
        return self.state != "down"


def hung_after_s() -> float:
    """How long an engine may answer nothing while its requests time out and still be busy:
    the longest one generation may take (an interactive request's total deadline, or a Bronze
    job's time limit on the engines Bronze shares)."""
    total = float(settings.BODYBROKER_ENGINE_TIMEOUTS["total"])
    return max(total, float(settings.BODYBROKER_BRONZE_TIMEOUT_S))


async def classify(client: EngineClient, endpoints: list[Endpoint]) -> EngineHealth:
    """Probe the engine behind ``client`` and tell up, busy and down apart, with what
    ``endpoints`` (this loop's pools' endpoints for it) saw of the requests sent there."""
    url = client.base_url
    probe = await client.health()
    if probe.ok:
        for endpoint in endpoints:
            endpoint.heard_from()
        return EngineHealth("up", url, probe.latency_ms)
    if not probe.timed_out:
        return EngineHealth("down", f"{url}: {probe.detail}", probe.latency_ms)
    port = await client.listening()
    latency_ms = round(probe.latency_ms + port.latency_ms, 2)
    if not port.ok:
        return EngineHealth("down", f"{url}: {probe.detail}; {port.detail}", latency_ms, "port")
    answered_at = max((e.answered_at for e in endpoints), default=0.0)
    failed_hard_at = max((e.failed_hard_at for e in endpoints), default=0.0)
    failed_at = max((e.failed_at for e in endpoints), default=0.0)
    silent_s = time.monotonic() - answered_at
    if failed_hard_at > answered_at:
        return EngineHealth(
            "down",
            f"{url}: port open, but a request failed there (refused, reset or 5xx) and nothing "
            "answered since",
            latency_ms,
            "requests",
        )
    if failed_at > answered_at and silent_s > hung_after_s():
        return EngineHealth(
            "down",
            f"{url}: port open, but its requests time out and nothing answered for "
            f"{silent_s:.0f} s",
            latency_ms,
            "requests",
        )
    in_flight = sum(e.outstanding for e in endpoints)
    return EngineHealth(
        "busy",
        f"{url}: port open, generating ({in_flight} request(s) of this process in flight); "
        f"probe {probe.detail}",
        latency_ms,
        "port",
    )


async def engine_health(url: str, model: str) -> EngineHealth:
    """``classify`` for the engine at ``url``, with the running loop's pools' passive health."""
    return await classify(get_client(url, model, engine_timeouts()), pools().endpoints_at(url))


def engine_timeouts() -> Timeouts:
    return Timeouts(**settings.BODYBROKER_ENGINE_TIMEOUTS)


def _build() -> PoolSet:
    conf = settings.BODYBROKER_TIERS
    timeouts = engine_timeouts()
    realtime = settings.BODYBROKER_REALTIME_CONCURRENCY
    background = settings.BODYBROKER_BACKGROUND_CONCURRENCY

    def pool(tier: Tier, role: str, urls: list[str], model: str, engine: str | None) -> TierPool:
        endpoints = [
            Endpoint(
                url=str(url),
                model=model,
                engine=engine,
                realtime=asyncio.Semaphore(realtime),
                background=asyncio.Semaphore(background),
            )
            for url in urls
        ]
        return TierPool(tier, role, endpoints, timeouts)

    primary: dict[str, TierPool] = {}
    fallback: dict[str, TierPool] = {}
    for tier in ("gold", "silver", "bronze"):
        tier_conf: dict[str, Any] = conf[tier]
        engine = tier_conf.get("engine")
        primary[tier] = pool(tier, "model", tier_conf["urls"], tier_conf["model"], engine)
        fallback[tier] = pool(
            tier,
            "fallback_model",
            tier_conf.get("fallback_urls", []),
            tier_conf.get("fallback_model", tier_conf["model"]),
            engine,
        )
    return PoolSet(primary, fallback)


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PoolSet] = (
    weakref.WeakKeyDictionary()
)


def pools() -> PoolSet:
    """The pools of the running event loop (built on first use)."""
    loop = asyncio.get_running_loop()
    found = _per_loop.get(loop)
    if found is None:
        found = _per_loop[loop] = _build()
    return found


@receiver(setting_changed)
def _rebuild_on_settings_change(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("BODYBROKER_"):
        _per_loop.clear()
