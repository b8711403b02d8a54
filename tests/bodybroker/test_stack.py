"""``make run``'s supervisor: every process up and healthy, then Ctrl-C leaves no orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from inference.process import free_port

ROOT = Path(__file__).resolve().parents[2]


def processes_with(marker: str) -> list[int]:
    """Pids whose environment carries ``marker`` (every child the stack starts inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.engine
def test_the_stack_comes_up_healthy_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DEBUG="1",
        DJANGO_SETTINGS_MODULE="bodybroker.settings.base",
        BODYBROKER_VAR_DIR=str(tmp_path),
        BODYBROKER_STACK_TEST_MARKER=str(tmp_path),
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port, gold, silver = free_port(), free_port(), free_port()
    stack = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bodybroker.stack",
            "--port",
            str(port),
            "--gold-port",
            str(gold),
            "--silver-port",
            str(silver),
            "--ready-timeout",
            "120",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output: list[str] = []
    assert stack.stdout is not None
    pipe = stack.stdout

    def drain() -> None:  # keep reading so the stack never blocks on a full pipe
        for raw in pipe:
            output.append(raw.decode(errors="replace"))

    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + 150
        while not any("Body Broker is up" in line for line in output):
            assert stack.poll() is None, "".join(output[-40:])
            assert time.monotonic() < deadline, "".join(output[-40:])
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=10) as response:
            assert response.status == 200
        children = processes_with(f"BODYBROKER_STACK_TEST_MARKER={tmp_path}")
        assert len(children) >= 5  # two engines, worker (+ its pool), beat, web

        stack.send_signal(signal.SIGINT)
        stack.wait(timeout=60)
        assert stack.returncode == 0
        deadline = time.monotonic() + 10
        while processes_with(f"BODYBROKER_STACK_TEST_MARKER={tmp_path}") and (
            time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert processes_with(f"BODYBROKER_STACK_TEST_MARKER={tmp_path}") == []
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()
        for pid in processes_with(f"BODYBROKER_STACK_TEST_MARKER={tmp_path}"):
            os.kill(pid, signal.SIGKILL)
