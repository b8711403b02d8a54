"""Gateway benchmark: what Body Broker's OpenAI-compatible door adds on top of its upstream.

``make bench-gateway`` runs it. Side by side in one run, on this machine, with the shared load
harness (``../shared/bench``): a fake OpenAI upstream that answers at once, measured directly
("direct") and through the gateway ("gateway": API-key auth, rate-limit accounting on, routing,
fallback chain, metrics, usage/cost accounting). The upstream and the load client share core 0,
the gateway gets core 1; direct and gateway alternate for ``--rounds`` rounds and the table
quotes medians over rounds and the latency the gateway adds.

The response cache is off (``BODYBROKER_RESPONSE_CACHE_SIZE=0``): the load generator sends the
same greedy request every time, and a cache hit would measure the cache, not the forwarding.
The gateway runs the embedded default (SQLite, in-process counters) with DEBUG off.

    python bench/gateway.py [-n 2000] [--rounds 2] [-c 1,32] [--out bench/results]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(os.environ.get("BODYBROKER_BENCH_HARNESS", ROOT.parent / "shared" / "bench"))
PY = sys.executable


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if shutil.which("taskset") else argv


def wait_http(url: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (loopback)
            with urllib.request.urlopen(request, timeout=2):  # noqa: S310
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-c", "--concurrency", default="1,32")
    parser.add_argument("--stream", default="both", choices=["no", "yes", "both"])
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
        wait_http(
            f"http://127.0.0.1:{gateway_port}/v1/models", headers={"Authorization": f"Bearer {key}"}
        )
        targets = {
            "direct": (f"{upstream}/v1", "fake-model", "", str(processes[0].pid)),
            "gateway": (f"http://127.0.0.1:{gateway_port}/v1", "silver", key, str(gateway.pid)),
        }
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
    (out_dir / f"gateway-{stamp}.md").write_text(table)
    print(table)
    print(f"raw results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
