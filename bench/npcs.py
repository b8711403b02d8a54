"""NPC load benchmark: game clients streaming NPC state against the real stack.

``make bench-npcs`` runs it. It starts the real processes — both CPU engines, the ASGI web
server, and the intent updater (``run_intents``) on Redis — creates N NPCs, then connects K game
clients that subscribe to them, send ``state.update`` at ``--hz`` per NPC and an ``intent.get``
for each NPC every ``--get-every`` frames, and measures:

- ``intent.get`` round trip (send → the answer with the same ``ref``), p50/p99;
- intent push delay (``generated_at`` on the server → received), p50/p99;
- freshness: the share of NPCs whose pushed intent never got older than 2 s;
- messages per second, and the web process's CPU per 1,000 messages;
- errors and dropped connections; dialogue time to first token;
- with ``--outage``: the engines are killed halfway and every NPC must keep receiving intents
  (``policy``/``cache``) with no error frame.

    python bench/npcs.py --npcs 200 --clients 4 --seconds 20
    python bench/npcs.py --npcs 50,200,1000 --seconds 15 --outage
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
sys.path.insert(0, str(ROOT))

from inference.process import EngineProcess, free_port  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


class Client:
    def __init__(self, url: str, key: str, npcs: list[str], hz: float, get_every: int) -> None:
        self.url, self.key, self.npcs, self.hz, self.get_every = url, key, npcs, hz, get_every
        self.sent_at: dict[str, float] = {}
        self.rtt_ms: list[float] = []
        self.push_ms: list[float] = []
        self.last_push: dict[str, float] = {}
        self.max_gap: dict[str, float] = {}
        self.sources: dict[str, int] = {}
        self.errors: list[dict[str, Any]] = []
        self.messages = 0
        self.dropped = False

    async def run(self, until: float) -> None:
        try:
            async with websockets.connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {self.key}"},
                max_queue=None,
            ) as ws:
                for npc in self.npcs:
                    await ws.send(json.dumps({"type": "npc.subscribe", "npc_id": npc}))
                reader = asyncio.create_task(self._read(ws))
                await self._frames(ws, until)
                reader.cancel()
        except websockets.ConnectionClosed:
            self.dropped = True

    async def _frames(self, ws: Any, until: float) -> None:
        frame, period = 0, 1 / self.hz
        next_at = time.monotonic()
        while time.monotonic() < until:
            for index, npc in enumerate(self.npcs):
                x = (frame + index) % 20
                state = {
                    "pos": [x, 0],
                    "fear": (frame % 10) / 10,
                    "health": 1.0,
                    "player": {"pos": [3, 4], "visible": frame % 60 < 30},
                    "noise": 0.2,
                }
                await ws.send(json.dumps({"type": "state.update", "npc_id": npc, "state": state}))
                self.messages += 1
                if frame % self.get_every == 0:
                    ref = f"{npc}:{frame}"
                    self.sent_at[ref] = time.perf_counter()
                    await ws.send(json.dumps({"type": "intent.get", "npc_id": npc, "ref": ref}))
                    self.messages += 1
            frame += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "intent":
                ref = message.get("ref")
                if ref is not None and ref in self.sent_at:
                    self.rtt_ms.append((time.perf_counter() - self.sent_at.pop(ref)) * 1000)
                    continue
                now = time.time()
                npc = message["npc_id"]
                self.push_ms.append(max(0.0, (now - message["generated_at"]) * 1000))
                self.sources[message["source"]] = self.sources.get(message["source"], 0) + 1
                if npc in self.last_push:
                    gap = now - self.last_push[npc]
                    self.max_gap[npc] = max(self.max_gap.get(npc, 0.0), gap)
                self.last_push[npc] = now
            elif kind == "error":
                self.errors.append(message)


async def dialogue_ttft(url: str, key: str, npc: str) -> float | None:
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps({"type": "dialogue.say", "npc_id": npc, "text": "Who are you?"}))
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] in ("dialogue.token", "dialogue.done"):
                return (time.perf_counter() - started) * 1000
    return None


async def load(
    url: str,
    key: str,
    npcs: list[str],
    clients: int,
    hz: float,
    get_every: int,
    seconds: float,
    outage: list[EngineProcess] | None,
) -> dict[str, Any]:
    shares = [npcs[i::clients] for i in range(clients)]
    players = [Client(url, key, share, hz, get_every) for share in shares if share]
    until = time.monotonic() + seconds
    tasks = [asyncio.create_task(p.run(until)) for p in players]
    if outage:
        await asyncio.sleep(seconds / 2)
        for engine in outage:
            engine.stop(grace=0)
    await asyncio.gather(*tasks)
    rtt = [v for p in players for v in p.rtt_ms]
    push = [v for p in players for v in p.push_ms]
    gaps = {npc: gap for p in players for npc, gap in p.max_gap.items()}
    pushed_npcs = {npc for p in players for npc in p.last_push}
    fresh = sum(1 for npc in npcs if npc in pushed_npcs and gaps.get(npc, 0.0) <= 2.0)
    sources: dict[str, int] = {}
    for p in players:
        for source, n in p.sources.items():
            sources[source] = sources.get(source, 0) + n
    return {
        "intent_get_ms": {"p50": pct(rtt, 0.5), "p99": pct(rtt, 0.99), "n": len(rtt)},
        "push_delay_ms": {"p50": pct(push, 0.5), "p99": pct(push, 0.99), "n": len(push)},
        "fresh_share": round(fresh / len(npcs), 3),
        "messages": sum(p.messages for p in players),
        "errors": sum(len(p.errors) for p in players),
        "first_error": next((p.errors[0] for p in players if p.errors), None),
        "dropped": sum(p.dropped for p in players),
        "sources": sources,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npcs", default="200", help="comma list of NPC counts to run")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--hz", type=float, default=30.0, help="state.update per NPC per second")
    parser.add_argument("--get-every", type=int, default=1, help="intent.get every N frames")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--outage", action="store_true", help="kill the engines halfway")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/3")
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="bb-bench-npcs-"))
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DJANGO_SETTINGS_MODULE": "bodybroker.settings.base",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "BODYBROKER_VAR_DIR": str(var_dir),
        "REDIS_URL": args.redis,
        "LOG_LEVEL": "WARNING",
        "BODYBROKER_WS_RATE_PER_S": "100000",
    }
    subprocess.run(
        [PY, "-c", f"import redis; redis.Redis.from_url('{args.redis}').flushdb()"], check=True
    )
    subprocess.run(
        [PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    counts = [int(n) for n in args.npcs.split(",")]
    most = max(counts)
    key = (
        subprocess.run(
            [
                PY,
                "-c",
                "import django; django.setup()\n"
                "from apps.security.services import api_key_create\n"
                "from apps.npcs.services import npc_create\n"
                "archetypes = ['guard', 'civilian', 'stalker']\n"
                f"for i in range({most}):\n"
                "    kind = archetypes[i % 3]\n"
                "    npc_create(slug=f'bench-{i:04d}', fields={'name': f'NPC {i}',"
                " 'archetype': kind, 'micro_policy': kind, 'safety_lines': ['...'],"
                " 'intent_hz': 1.0})\n"
                "print(api_key_create(name='bench', scopes='game')[1])",
            ],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )

    engines = [EngineProcess("gold"), EngineProcess("silver")]
    processes: list[subprocess.Popen[bytes]] = []
    results = []
    try:
        for engine in engines:
            engine.start()
        for engine in engines:
            engine.wait_healthy(120)
        env.update(
            BODYBROKER_GOLD_URLS=engines[0].base_url,
            BODYBROKER_SILVER_URLS=engines[1].base_url,
            BODYBROKER_BRONZE_URLS=engines[1].base_url,
        )
        port = free_port()
        web = subprocess.Popen(
            [
                PY,
                "-m",
                "uvicorn",
                "bodybroker.asgi:application",
                "--port",
                str(port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
                "--lifespan",
                "on",
            ],
            cwd=ROOT,
            env=env,
        )
        processes.append(web)
        processes.append(subprocess.Popen([PY, "manage.py", "run_intents"], cwd=ROOT, env=env))
        url = f"ws://127.0.0.1:{port}/ws/game/"
        time.sleep(4)
        for count in counts:
            npcs = [f"bench-{i:04d}" for i in range(count)]
            cpu_before = cpu_seconds(web.pid)
            started = time.monotonic()
            outcome = asyncio.run(
                load(
                    url,
                    key,
                    npcs,
                    args.clients,
                    args.hz,
                    args.get_every,
                    args.seconds,
                    engines if args.outage else None,
                )
            )
            wall = time.monotonic() - started
            cpu = cpu_seconds(web.pid) - cpu_before
            outcome.update(
                npcs=count,
                clients=args.clients,
                hz=args.hz,
                seconds=round(wall, 1),
                messages_per_s=round(outcome["messages"] / wall, 1),
                web_cpu_ms_per_1000_messages=round(
                    1000 * cpu * 1000 / max(outcome["messages"], 1), 1
                ),
                outage=args.outage,
            )
            if not args.outage:
                outcome["dialogue_ttft_ms"] = asyncio.run(dialogue_ttft(url, key, npcs[0]))
            results.append(outcome)
            print(json.dumps(outcome), flush=True)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for engine in engines:
            engine.stop(grace=2)
        shutil.rmtree(var_dir, ignore_errors=True)
    return 0 if all(r["errors"] == 0 and r["dropped"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
