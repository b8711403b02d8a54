"""Run every process of Body Broker on this machine, keep them running, stop them all together.

``python -m bodybroker.stack`` (what ``make run`` ends with) starts the Gold and Silver engines,
the Celery worker and beat, the intent updater (with Redis) and the ASGI web server; waits until
``/health/`` reports every dependency up; prints the URLs and how to sign in. A process that
exits is restarted after a back-off that doubles with each quick exit (capped, and forgotten once
it has stayed up a while), so a crash-looping process is retried for good and never takes the
rest down; meanwhile the router's fallback chains answer for a missing engine. Only Ctrl-C or
SIGTERM stops the stack: every process group it started is stopped, so nothing is left behind.

It keeps a small JSON status file (``stack-status.json`` under ``BODYBROKER_VAR_DIR``, replaced
atomically) with each process's state, pid and restart count; ``/health/`` shows it.
"""

from __future__ import annotations

import argparse
import contextlib
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
from typing import Any

from bodybroker.queues import ALL_QUEUES
from bodybroker.settings.env import local_secret_key
from inference.cpu_class import IDLE_CLASS_ENV
from inference.profiles import DEFAULT_ENGINE, ENGINE_ENV

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ("\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m")
RESET = "\033[0m"

STATUS_FILE = "stack-status.json"
RESTART_FIRST_S = 1.0  # wait before the first restart; doubles with each quick exit
RESTART_CAP_S = 30.0  # the longest wait between two restarts of a crash-looping process
STABLE_AFTER_S = 60.0  # a process up this long has recovered: its next exit waits RESTART_FIRST_S


@dataclass
class Managed:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    quick_exits: int = 0  # exits in a row, each before STABLE_AFTER_S
    started_at: float = 0.0  # monotonic
    started_wall: float = 0.0
    restart_at: float | None = None  # monotonic; set while waiting to restart
    last_exit: int | None = None
    colour: str = ""

    def snapshot(self) -> dict[str, Any]:
        running = self.process is not None and self.process.poll() is None
        return {
            "state": "running" if running else "restarting",
            "pid": self.process.pid if running and self.process else None,
            "restarts": self.restarts,
            "started_at": round(self.started_wall, 3),
            "last_exit": self.last_exit,
        }


def _pump(name: str, process: subprocess.Popen[bytes], colour: str, width: int) -> None:
    if process.stdout is None:
        return
    tag = f"{colour}{name:<{width}}{RESET} | " if sys.stdout.isatty() else f"{name} | "
    for raw in iter(process.stdout.readline, b""):
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


def game_frames_first(env: dict[str, str]) -> None:
    """On the CPU default the engines share the web process's cores: its event loop runs
    real-time and the engines idle, so a game frame does not wait for a model. Both are opt-in
    anywhere else (docs/npcs.md, "Sharing the cores"); a value the user set wins."""
    if env.get(ENGINE_ENV, DEFAULT_ENGINE) == DEFAULT_ENGINE:
        env.setdefault("BODYBROKER_EVENT_LOOP_RT_PRIORITY", "1")
        env.setdefault(IDLE_CLASS_ENV, "1")


def spawn(proc: Managed, env: dict[str, str], width: int) -> None:
    """Start ``proc`` in its own process group (so it and its children stop together)."""
    proc.process = subprocess.Popen(  # noqa: S603 — our own argv, no shell
        proc.argv,
        cwd=ROOT,
        env={**env, **proc.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.started_at, proc.started_wall = time.monotonic(), time.time()
    threading.Thread(
        target=_pump, args=(proc.name, proc.process, proc.colour, width), daemon=True
    ).start()


def start(processes: list[Managed], env: dict[str, str]) -> None:
    width = max(len(p.name) for p in processes)
    for index, proc in enumerate(processes):
        proc.colour = COLOURS[index % len(COLOURS)]
        spawn(proc, env, width)


def restart_delay(quick_exits: int) -> float:
    """How long to wait before restarting a process that exited ``quick_exits`` times in a row
    without staying up ``STABLE_AFTER_S``: 1, 2, 4, … seconds, capped at ``RESTART_CAP_S``."""
    return float(min(RESTART_CAP_S, RESTART_FIRST_S * 2 ** max(0, min(quick_exits - 1, 16))))


def tend(processes: list[Managed], env: dict[str, str]) -> bool:
    """Notice exited processes and restart those whose back-off is over; True when anything
    changed. A process that exited leaves its group behind (a worker's pool children, say):
    the group is killed before the process is started again, so the two never share a port or
    a queue."""
    width = max(len(p.name) for p in processes)
    now = time.monotonic()
    changed = False
    for proc in processes:
        if proc.process is None:
            continue
        if proc.restart_at is None and proc.process.poll() is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.process.pid, signal.SIGKILL)
            ran_s = now - proc.started_at
            proc.quick_exits = 1 if ran_s >= STABLE_AFTER_S else proc.quick_exits + 1
            proc.last_exit = proc.process.returncode
            delay = restart_delay(proc.quick_exits)
            proc.restart_at = now + delay
            print(
                f"\n{proc.name} exited with code {proc.last_exit} after {ran_s:.1f} s; "
                f"restarting in {delay:.0f} s (restart {proc.restarts + 1}).",
                flush=True,
            )
            changed = True
        elif proc.restart_at is not None and now >= proc.restart_at:
            proc.restart_at = None
            proc.restarts += 1
            spawn(proc, env, width)
            pid = proc.process.pid if proc.process else "?"
            print(f"\n{proc.name} restarted (pid {pid}, restart {proc.restarts}).", flush=True)
            changed = True
    return changed


def write_status(path: Path, processes: list[Managed]) -> None:
    """Replace the status file atomically, so a reader never sees half of it."""
    body = {
        "supervisor_pid": os.getpid(),
        "updated_at": round(time.time(), 3),
        "processes": {p.name: p.snapshot() for p in processes},
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(body, indent=1))
    os.replace(temporary, path)


def read_status(var_dir: Path | str) -> dict[str, Any] | None:
    """The processes a live supervisor reports in ``var_dir``; None without one (no file, an
    unreadable one, or one left by a supervisor that is gone)."""
    try:
        body = json.loads((Path(var_dir) / STATUS_FILE).read_text())
        pid = int(body["supervisor_pid"])
        processes = body["processes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's
    return processes if isinstance(processes, dict) else None


def stop(processes: list[Managed], grace_s: float = 10.0) -> None:
    for proc in processes:  # what an exited process left behind has no one to wait for
        if proc.process and proc.process.poll() is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.process.pid, signal.SIGKILL)
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
    game_frames_first(env)
    env["PYTHONUNBUFFERED"] = "1"
    # It serves plain HTTP: a Secure cookie would never come back, and no one could sign in.
    env.setdefault("SESSION_COOKIE_SECURE", "0")
    var_dir = Path(env.get("BODYBROKER_VAR_DIR", ROOT / "var"))
    var_dir.mkdir(parents=True, exist_ok=True)
    if not env.get("SECRET_KEY") and not env.get("SECRET_KEY_FILE"):
        # Every process, and a `manage.py` typed in another shell, reads this same file.
        local_secret_key(var_dir / "secret_key", create=True)

    processes = plan(args.host, args.port, args.gold_port, args.silver_port)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    base = f"http://{args.host}:{args.port}"
    status_path = var_dir / STATUS_FILE
    start(processes, env)
    write_status(status_path, processes)
    try:
        deadline = time.monotonic() + args.ready_timeout
        ready = warned = False
        while not stopping.is_set():
            if tend(processes, env):
                write_status(status_path, processes)
            if not ready:
                status, body = health(f"{base}/health/")
                if status == 200:
                    ready = True
                    print(banner(base), flush=True)
                elif not warned and time.monotonic() > deadline:
                    warned = True
                    print(
                        f"\nNot healthy after {args.ready_timeout:.0f} s: "
                        f"{body.get('failing', 'web server not answering')}; still trying "
                        "(Ctrl-C stops).",
                        flush=True,
                    )
            stopping.wait(0.25 if ready else 1.0)
        return 0
    finally:
        print("\nStopping all processes…", flush=True)
        stop(processes)
        with contextlib.suppress(OSError):
            status_path.unlink()
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
