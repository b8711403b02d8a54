"""``GET /health/``: every dependency checked at once, 200 when all are up, 503 naming the rest.

Checks: the database, the cache, the channel layer, the Celery broker and a live worker (its
heartbeat row), and each tier's engine endpoints. Each check has its own deadline so one hung
dependency cannot hang the probe. Public on purpose (load balancers and ``make run`` poll it);
it reveals up/down/busy, latency and restart counts, never credentials.

An engine busy with a long generation answers its probe late; it is reported ``busy`` and does
not fail the check (``apps.router.engines.engine_health`` tells busy from down). Under
``make run`` the body also lists the supervised processes and how often each was restarted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

from apps.admin_ops.selectors import workers_alive
from apps.router.engines import engine_health
from bodybroker.stack import read_status

CHECK_TIMEOUT_S = 3.0

State = Literal["up", "busy", "down"]
Check = Callable[[], Awaitable[str | tuple[State, str]]]
"""A check answers its detail (up), or a state and detail; it raises when the dependency is down."""


@dataclass(slots=True)
class CheckResult:
    ok: bool
    detail: str
    latency_ms: float = 0.0
    state: State = "up"


async def _timed(check: Check) -> CheckResult:
    started = time.perf_counter()
    state: State
    try:
        answer = await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_S)
        state, detail = answer if isinstance(answer, tuple) else ("up", answer)
    except TimeoutError:
        state, detail = "down", f"no answer within {CHECK_TIMEOUT_S:.0f} s"
    except Exception as exc:  # noqa: BLE001 — any failure is a failing check, reported by name
        state, detail = "down", f"{type(exc).__name__}: {exc}"
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return CheckResult(state != "down", detail, latency_ms, state)


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


def _engine_check(url: str, model: str) -> Check:
    async def check() -> tuple[State, str]:
        found = await engine_health(url, model)
        if not found.ok:
            raise RuntimeError(found.detail)
        return found.state, found.detail

    return check


def checks() -> dict[str, Check]:
    named: dict[str, Check] = {
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


def supervised_processes() -> dict[str, Any] | None:
    """What ``make run``'s supervisor last wrote about its processes (state, pid, restarts),
    or None when no live supervisor wrote it (the web server runs on its own)."""
    return read_status(settings.VAR_DIR)


async def health(request: HttpRequest) -> JsonResponse:
    results = await run_checks()
    failing = sorted(name for name, result in results.items() if not result.ok)
    body: dict[str, Any] = {
        "status": "ok" if not failing else "degraded",
        "failing": failing,
        "checks": {
            name: {"ok": r.ok, "state": r.state, "detail": r.detail, "latency_ms": r.latency_ms}
            for name, r in results.items()
        },
    }
    processes = supervised_processes()
    if processes is not None:
        body["processes"] = processes
    return JsonResponse(body, status=200 if not failing else 503)
