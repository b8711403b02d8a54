"""Run every process of Body Broker on this machine and stop them all together.

``python -m bodybroker.stack`` (what ``make run`` ends with) starts the Gold and Silver engines,
the Celery worker and beat, and the ASGI web server; waits until ``/health/`` reports every
dependency up; prints the URLs and how to sign in; and on Ctrl-C (or SIGTERM, or any process
dying) stops every process group it started, so nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bodybroker.queues import ALL_QUEUES

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ("\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m")
RESET = "\033[0m"


@dataclass
class Managed:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None


def _pump(proc: Managed, colour: str, width: int) -> None:
    if proc.process is None or proc.process.stdout is None:
        return
    tag = f"{colour}{proc.name:<{width}}{RESET} | " if sys.stdout.isatty() else f"{proc.name} | "
    for raw in iter(proc.process.stdout.readline, b""):
        sys.stdout.write(tag + raw.decode(errors="replace"))
        sys.stdout.flush()


def plan(host: str, port: int, gold_port: int, silver_port: int) -> list[Managed]:
    py = sys.executable
    celery = [py, "-m", "celery", "-A", "bodybroker"]
    return [
        Managed(
            "gold",
            [
                py,
                "-m",
                "inference",
                "serve",
                "--tier",
                "gold",
                "--host",
                "127.0.0.1",
                "--port",
                str(gold_port),
            ],
        ),
        Managed(
            "silver",
            [
                py,
                "-m",
                "inference",
                "serve",
                "--tier",
                "silver",
                "--host",
                "127.0.0.1",
                "--port",
                str(silver_port),
            ],
        ),
        Managed(
            "worker",
            [
                *celery,
                "worker",
                "-Q",
                ",".join(ALL_QUEUES),
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
                "--hostname",
                "worker@%h",
            ],
        ),
        Managed("beat", [*celery, "beat", "--loglevel", "INFO"]),
        # With Redis the intent updater is its own process; on the embedded default (per-process
        # cache and channel layer) the web process runs it.
        *(
            [Managed("intents", [py, "manage.py", "run_intents"])]
            if os.environ.get("REDIS_URL")
            else []
        ),
        Managed(
            "web",
            [
                py,
                "-m",
                "uvicorn",
                "bodybroker.asgi:application",
                "--host",
                host,
                "--port",
                str(port),
                "--lifespan",
                "on",
                "--no-access-log",
            ],
        ),
    ]


def start(processes: list[Managed], env: dict[str, str]) -> None:
    width = max(len(p.name) for p in processes)
    for index, proc in enumerate(processes):
        proc.process = subprocess.Popen(  # noqa: S603 — our own argv, no shell
            proc.argv,
            cwd=ROOT,
            env={**env, **proc.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(
            target=_pump, args=(proc, COLOURS[index % len(COLOURS)], width), daemon=True
        ).start()


def stop(processes: list[Managed], grace_s: float = 10.0) -> None:
    running = [p.process for p in processes if p.process and p.process.poll() is None]
    for process in running:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def health(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 — loopback
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.load(exc)
        except ValueError:
            return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


def dead(processes: list[Managed]) -> Managed | None:
    return next((p for p in processes if p.process and p.process.poll() is not None), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--gold-port", type=int, default=8101)
    parser.add_argument("--silver-port", type=int, default=8102)
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    args = parser.parse_args(argv)

    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "bodybroker.settings.base")
    env.setdefault("BODYBROKER_GOLD_URLS", f"http://127.0.0.1:{args.gold_port}")
    env.setdefault("BODYBROKER_SILVER_URLS", f"http://127.0.0.1:{args.silver_port}")
    env.setdefault("BODYBROKER_BRONZE_URLS", f"http://127.0.0.1:{args.silver_port}")
    env["PYTHONUNBUFFERED"] = "1"

    processes = plan(args.host, args.port, args.gold_port, args.silver_port)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    base = f"http://{args.host}:{args.port}"
    start(processes, env)
    try:
        deadline = time.monotonic() + args.ready_timeout
        status, body = 0, dict[str, object]()
        while not stopping.is_set():
            gone = dead(processes)
            if gone:
                code = gone.process.returncode if gone.process else "?"
                print(f"\n{gone.name} exited with code {code}; stopping everything.", flush=True)
                return 1
            status, body = health(f"{base}/health/")
            if status == 200:
                break
            if time.monotonic() > deadline:
                print(
                    f"\nNot healthy after {args.ready_timeout:.0f} s: "
                    f"{body.get('failing', 'web server not answering')}",
                    flush=True,
                )
                return 1
            stopping.wait(1.0)
        if stopping.is_set():
            return 0
        print(banner(base), flush=True)
        while not stopping.is_set():
            gone = dead(processes)
            if gone:
                print(f"\n{gone.name} exited; stopping everything.", flush=True)
                return 1
            stopping.wait(0.5)
        return 0
    finally:
        print("\nStopping all processes…", flush=True)
        stop(processes)
        print("All stopped.", flush=True)


def banner(base: str) -> str:
    lines = [
        "",
        "=" * 72,
        "Body Broker is up. Every dependency reports healthy.",
        f"  Console      {base}/",
        f"  REST API     {base}/api/v1/infer   (schema: {base}/api/schema/)",
        f"  Websocket    ws{base[4:]}/ws/game/",
        f"  Health       {base}/health/",
    ]
    credentials = Path(os.environ.get("BODYBROKER_VAR_DIR", ROOT / "var")) / "demo-credentials.json"
    if credentials.exists():
        demo = json.loads(credentials.read_text())
        lines += [
            f"  Sign in as   {demo['username']} / {demo['password']}",
            f"  API key      {demo['api_key']}",
            f"  Try:  curl -s {base}/api/v1/infer -H 'Authorization: Bearer {demo['api_key']}' "
            '-H \'Content-Type: application/json\' -d \'{"prompt": "Who goes there?", '
            '"max_tokens": 32}\'',
        ]
    lines += ["Press Ctrl-C to stop every process.", "=" * 72, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
