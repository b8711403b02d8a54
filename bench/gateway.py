"""Gateway benchmark: what Body Broker's OpenAI-compatible door adds on top of its upstream.

``make bench-gateway`` runs it. Side by side in one run, on this machine, with the shared load
harness (``../shared/bench``): a fake OpenAI upstream that answers at once, measured directly
("direct") and through the gateway ("gateway": API-key auth, rate-limit accounting on, routing,
fallback chain, metrics, usage/cost accounting). The upstream and the load client share core 0,
the gateway gets core 1; direct and gateway alternate for ``--rounds`` rounds and the table
quotes medians over rounds and the latency the gateway adds.

Before those rounds, the first ``--cold-n`` requests each process serves after start (c=32, no
warm-up) are measured on their own ("first requests after start"): the loadgen's warm-up would
hide a start-up stall, and a player's first seconds are the ones a stall spoils. That table
gives the slowest requests and when they started, counted from the first request.

The response cache is off (``BODYBROKER_RESPONSE_CACHE_SIZE=0``): the load generator sends the
same greedy request every time, and a cache hit would measure the cache, not the forwarding.
The gateway runs the embedded default (SQLite, in-process counters) with DEBUG off.

    python bench/gateway.py [-n 2000] [--rounds 2] [-c 1,32] [--cold-n 2000] [--out bench/results]
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
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(os.environ.get("BODYBROKER_BENCH_HARNESS", ROOT.parent / "shared" / "bench"))
PY = sys.executable


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if shutil.which("taskset") else argv


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Until ``url`` answers at all: a 401 will do, so the key's first use is the measured one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback)
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (as the shared loadgen computes it)."""
    k = (len(sorted_values) - 1) * fraction
    low = int(k)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (k - low)


async def _first_requests(
    url: str, model: str, key: str, n: int, concurrency: int
) -> list[tuple[float, float, bool]]:
    import aiohttp

    body = json.dumps(
        {
            "model": model,
            "max_tokens": 8,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Say hello."}],
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    left = n
    started = time.perf_counter()
    samples: list[tuple[float, float, bool]] = []  # (start offset s, latency s, ok)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                t0 = time.perf_counter()
                try:
                    async with session.post(
                        f"{url}/chat/completions", data=body, headers=headers
                    ) as r:
                        ok = r.status == 200 and b'"choices"' in await r.read()
                except aiohttp.ClientError:
                    ok = False
                samples.append((t0 - started, time.perf_counter() - t0, ok))

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return samples


def first_requests(label: str, url: str, model: str, key: str, n: int, concurrency: int) -> dict:
    """The first ``n`` requests a freshly started server answers, ``concurrency`` at a time,
    with no warm-up: latency percentiles, and the slowest five with when each started."""
    # On core 0 with the upstream, as the loadgen runs, so the gateway keeps core 1 to itself.
    affinity = os.sched_getaffinity(0)
    if shutil.which("taskset") and 0 in affinity:
        os.sched_setaffinity(0, {0})
    try:
        samples = asyncio.run(_first_requests(url, model, key, n, concurrency))
    finally:
        os.sched_setaffinity(0, affinity)
    latencies = sorted(s[1] * 1000 for s in samples)
    slowest = sorted(samples, key=lambda s: s[1], reverse=True)[:5]
    wall = max(s[0] + s[1] for s in samples)
    return {
        "label": label,
        "concurrency": concurrency,
        "n": len(samples),
        "errors": sum(1 for s in samples if not s[2]),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(latencies[-1], 2),
        "over_100ms": sum(1 for value in latencies if value > 100),
        "rps": round(len(samples) / wall, 1),
        "slowest": [[round(s[0] * 1000), round(s[1] * 1000, 1)] for s in slowest],
    }


def first_requests_table(rows: list[dict]) -> str:
    lines = [
        "First requests after start (c={c}, no warm-up):".format(c=rows[0]["concurrency"]),
        "",
        "| target | n | p50 ms | p99 ms | max ms | > 100 ms | req/s | errs "
        "| slowest (started at ms: took ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        slowest = ", ".join(f"{start}: {took}" for start, took in row["slowest"])
        lines.append(
            f"| {row['label']} | {row['n']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
            f"| {row['max_ms']:.1f} | {row['over_100ms']} | {row['rps']:.0f} | {row['errors']} "
            f"| {slowest} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-c", "--concurrency", default="1,32")
    parser.add_argument("--stream", default="both", choices=["no", "yes", "both"])
    parser.add_argument(
        "--cold-n", type=int, default=2000, help="first requests after start, measured apart"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if not (HARNESS / "loadgen.py").exists():
        print(f"the shared load harness is not at {HARNESS}", file=sys.stderr)
        return 2

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = out_dir / f"gateway-{stamp}.jsonl"
    var_dir = Path(tempfile.mkdtemp(prefix="bb-bench-"))
    upstream_port, gateway_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "DJANGO_SETTINGS_MODULE": "bodybroker.settings.base",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "BODYBROKER_VAR_DIR": str(var_dir),
        "BODYBROKER_GOLD_URLS": upstream,
        "BODYBROKER_SILVER_URLS": upstream,
        "BODYBROKER_BRONZE_URLS": upstream,
        "BODYBROKER_SILVER_ENGINE": "vllm",
        "BODYBROKER_GOLD_ENGINE": "vllm",
        "BODYBROKER_SILVER_MODEL_NAME": "fake-model",
        "BODYBROKER_RESPONSE_CACHE_SIZE": "0",
        "LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    key = subprocess.run(
        [
            PY,
            "-c",
            "import django; django.setup();"
            "from apps.security.services import api_key_create as c;"
            "k, raw = c(name='bench', scopes='infer');"
            "k.requests_per_minute = 10**9; k.tokens_per_minute = 10**12; k.save(); print(raw)",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()

    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            subprocess.Popen(
                pinned(
                    "0",
                    [
                        PY,
                        "-m",
                        "uvicorn",
                        "fake_upstream:app",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(upstream_port),
                        "--loop",
                        "uvloop",
                        "--http",
                        "httptools",
                        "--no-access-log",
                        "--log-level",
                        "warning",
                    ],
                ),
                cwd=HARNESS,
                env={**os.environ, "FAKE_MODEL": "fake-model"},
            )
        )
        gateway = subprocess.Popen(
            pinned(
                "1",
                [
                    PY,
                    "-m",
                    "uvicorn",
                    "bodybroker.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(gateway_port),
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
            ),
            cwd=ROOT,
            env=env,
        )
        processes.append(gateway)
        wait_http(f"{upstream}/v1/models")
        wait_http(f"http://127.0.0.1:{gateway_port}/v1/models")
        targets = {
            "direct": (f"{upstream}/v1", "fake-model", "", str(processes[0].pid)),
            "gateway": (f"http://127.0.0.1:{gateway_port}/v1", "silver", key, str(gateway.pid)),
        }
        cold = []
        if args.cold_n:
            for label, (url, model, api_key, _pid) in targets.items():
                print(f"first {args.cold_n} requests: {label}", file=sys.stderr, flush=True)
                cold.append(first_requests(label, url, model, api_key, args.cold_n, 32))
        with results.open("w") as sink:
            for round_ in range(1, args.rounds + 1):
                for label, (url, model, api_key, pid) in targets.items():
                    print(f"round {round_}: {label}", file=sys.stderr, flush=True)
                    subprocess.run(
                        pinned(
                            "0",
                            [
                                PY,
                                str(HARNESS / "loadgen.py"),
                                "--url",
                                url,
                                "--model",
                                model,
                                "--api-key",
                                api_key,
                                "-n",
                                str(args.n),
                                "-c",
                                args.concurrency,
                                "--stream",
                                args.stream,
                                "--watch-pid",
                                pid,
                                "--label",
                                f"{label}|r{round_}",
                                "--overhead-header",
                                "x-bodybroker-overhead-ms",
                            ],
                        ),
                        check=True,
                        stdout=sink,
                    )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(var_dir, ignore_errors=True)
    table = subprocess.run(
        [PY, str(HARNESS / "summarize.py"), str(results), "--baseline", "direct"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if cold:
        # Apart from the loadgen lines, which summarize.py reads.
        with (out_dir / f"gateway-{stamp}-first.jsonl").open("w") as sink:
            for row in cold:
                sink.write(json.dumps({"first_requests": row}) + "\n")
        table = first_requests_table(cold) + "\n" + table
    (out_dir / f"gateway-{stamp}.md").write_text(table)
    print(table)
    print(f"raw results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
