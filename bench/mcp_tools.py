"""``make bench-mcp``: latency of the MCP tools and of the approval path, on this machine.

Serves the whole application (uvicorn, lifespan on) on a throw-away SQLite database and, through
the official SDK's streamable-HTTP client (one client, the way the router holds one):

- ``get_npc_state`` as Silver would call it mid-dialogue: p50/p95/p99 over 300 calls (mostly
  served from the 5 s snapshot cache) and with the cache cleared before each call;
- ``queue_state_change`` (event + change request + audit): p50/p95 over 50 calls;
- the approval path in-process: approve + execute a ``game_state.write``, p50/p95 over 50.

Target: a cached read tool answers in p95 ≤ 25 ms, a small slice of Silver's 80–250 ms budget.
Writes ``bench/results/mcp-<time>.json`` and prints a table.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bodybroker.settings.base")
os.environ["BODYBROKER_VAR_DIR"] = tempfile.mkdtemp(prefix="bench-mcp-")
os.environ.setdefault("DEBUG", "1")
for name in ("DATABASE_URL", "REDIS_URL"):
    os.environ.pop(name, None)  # always the embedded default: a throw-away SQLite file

import django  # noqa: E402

django.setup()

import anyio  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402

TARGET_READ_P95_MS = 25.0


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(pct(samples, 0.95), 2),
        "p99_ms": round(pct(samples, 0.99), 2),
    }


def main() -> int:
    call_command("migrate", verbosity=0)
    from apps.admin_ops import selectors, services
    from apps.admin_ops.tasks import execute_change_request
    from apps.npcs.services import game_state_apply
    from apps.security.scopes import ADMIN
    from apps.security.selectors import user_scopes
    from apps.security.services import api_key_create, roles_ensure
    from tests.support.live_asgi import mcp_session, serve_asgi

    roles_ensure()
    from django.contrib.auth.models import Group

    approver = User.objects.create_user("bench-admin", password=None)
    approver.groups.add(Group.objects.get(name="admin"))
    _, raw = api_key_create(name="bench", scopes=[ADMIN])
    game_state_apply(subject="npc:warden", changes={"set": {"mood": "wary"}}, by="bench")
    execute_change_request.delay = lambda *a: None  # type: ignore[method-assign]  # inline below

    results: dict[str, Any] = {}
    with serve_asgi() as url:
        endpoint = f"{url}/mcp/game_state/"

        async def reads(clear: bool, n: int) -> list[float]:
            samples = []
            async with mcp_session(endpoint, raw, tier="silver") as client:
                for _ in range(n):
                    if clear:
                        cache.delete("game_state:npc:warden")
                    started = time.perf_counter()
                    result = await client.call_tool("get_npc_state", {"npc_id": "warden"})
                    samples.append((time.perf_counter() - started) * 1000)
                    assert not result.is_error
            return samples

        async def writes(n: int) -> list[float]:
            samples = []
            async with mcp_session(endpoint, raw, tier="bronze") as client:
                for i in range(n):
                    started = time.perf_counter()
                    result = await client.call_tool(
                        "queue_state_change",
                        {
                            "subject": f"npc:bench-{i}",
                            "changes": {"set": {"mood": "afraid"}},
                            "reason": "bench",
                        },
                    )
                    samples.append((time.perf_counter() - started) * 1000)
                    assert not result.is_error
            return samples

        results["get_npc_state_cached"] = summary(anyio.run(reads, False, 300))
        results["get_npc_state_uncached"] = summary(anyio.run(reads, True, 100))
        results["queue_state_change"] = summary(anyio.run(writes, 50))

    samples = []
    for change_request_id in selectors.change_requests().values_list("id", flat=True)[:50]:
        started = time.perf_counter()
        services.change_request_approve(
            change_request_id=change_request_id, user=approver, scopes=user_scopes(approver)
        )
        assert execute_change_request(str(change_request_id)) == "executed"
        samples.append((time.perf_counter() - started) * 1000)
    results["approve_and_execute"] = summary(samples)

    ok = results["get_npc_state_cached"]["p95_ms"] <= TARGET_READ_P95_MS
    results["target"] = {"cached_read_p95_ms": TARGET_READ_P95_MS, "met": ok}
    out = ROOT / "bench" / "results" / f"mcp-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"{'measure':<26}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    for name, row in results.items():
        if name != "target":
            print(
                f"{name:<26}{row['n']:>5}{row['p50_ms']:>10}{row['p95_ms']:>10}{row['p99_ms']:>10}"
            )
    print(f"cached read p95 ≤ {TARGET_READ_P95_MS} ms: {'met' if ok else 'NOT met'} ({out})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
