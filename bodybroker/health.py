"""``GET /health/``: every dependency checked at once, 200 when all are up, 503 naming the rest.

Checks: the database, the cache, the channel layer, the Celery broker and a live worker (its
heartbeat row), and each tier's engine endpoints. Each check has its own deadline so one hung
dependency cannot hang the probe. Public on purpose (load balancers and ``make run`` poll it);
it reveals up/down and latency, never credentials.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

from apps.admin_ops.selectors import workers_alive
from apps.router.engines import engine_timeouts
from inference.client import get_client

CHECK_TIMEOUT_S = 3.0


@dataclass(slots=True)
class CheckResult:
    ok: bool
    detail: str
    latency_ms: float = 0.0


async def _timed(check: Callable[[], Awaitable[str]]) -> CheckResult:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_S)
        ok = True
    except TimeoutError:
        ok, detail = False, f"no answer within {CHECK_TIMEOUT_S:.0f} s"
    except Exception as exc:  # noqa: BLE001 — any failure is a failing check, reported by name
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return CheckResult(ok, detail, round((time.perf_counter() - started) * 1000, 2))


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


async def check_database() -> str:
    return await sync_to_async(_database, thread_sensitive=False)()


async def check_cache() -> str:
    key = f"health:{uuid.uuid4().hex}"
    await cache.aset(key, "1", timeout=5)
    if await cache.aget(key) != "1":
        raise RuntimeError("value written was not read back")
    await cache.adelete(key)
    return type(cache).__name__


async def check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("health.")
    try:
        await layer.send(channel, {"type": "health.ping"})
        message = await asyncio.wait_for(layer.receive(channel), 5)
    finally:
        # A pub/sub layer stays subscribed to a channel until told otherwise.
        discard = getattr(layer, "discard_channel", None)
        if discard is not None:
            await discard(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError(f"unexpected message {message!r}")
    return type(layer).__name__


def _broker() -> str:
    from bodybroker.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        transport = conn.transport_cls
    return str(transport)


async def check_broker() -> str:
    return await sync_to_async(_broker, thread_sensitive=False)()


def _worker() -> str:
    window = settings.BODYBROKER_WORKER_HEARTBEAT_S * 3
    names = list(workers_alive(within_s=window).values_list("hostname", flat=True))
    if not names:
        raise RuntimeError(f"no worker heartbeat in the last {window:.0f} s")
    return ", ".join(names)


async def check_worker() -> str:
    return await sync_to_async(_worker, thread_sensitive=False)()


def _engine_check(url: str, model: str) -> Callable[[], Awaitable[str]]:
    async def check() -> str:
        result = await get_client(url, model, engine_timeouts()).health()
        if not result.ok:
            raise RuntimeError(f"{url}: {result.detail}")
        return url

    return check


def checks() -> dict[str, Callable[[], Awaitable[str]]]:
    named: dict[str, Callable[[], Awaitable[str]]] = {
        "database": check_database,
        "cache": check_cache,
        "channel_layer": check_channel_layer,
        "broker": check_broker,
        "worker": check_worker,
    }
    for tier, conf in settings.BODYBROKER_TIERS.items():
        for index, url in enumerate(conf["urls"]):
            suffix = f"[{index}]" if len(conf["urls"]) > 1 else ""
            named[f"engine:{tier}{suffix}"] = _engine_check(url, str(conf["model"]))
    return named


async def run_checks() -> dict[str, CheckResult]:
    named = checks()
    results = await asyncio.gather(*(_timed(check) for check in named.values()))
    return dict(zip(named, results, strict=True))


async def health(request: HttpRequest) -> JsonResponse:
    results = await run_checks()
    failing = sorted(name for name, result in results.items() if not result.ok)
    body: dict[str, Any] = {
        "status": "ok" if not failing else "degraded",
        "failing": failing,
        "checks": {
            name: {"ok": r.ok, "detail": r.detail, "latency_ms": r.latency_ms}
            for name, r in results.items()
        },
    }
    return JsonResponse(body, status=200 if not failing else 503)
