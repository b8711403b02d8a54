"""The web process's event loop thread at a real-time priority (``bodybroker.realtime``), in
real uvicorn processes: only that thread, and only where the OS lets the process take it."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from inference.process import free_port

ROOT = Path(__file__).resolve().parents[2]
PR_CAPBSET_DROP, CAP_SYS_NICE = 24, 23  # <linux/prctl.h>, <linux/capability.h>
POLICY_FIELD = 41  # /proc/<pid>/task/<tid>/stat, counted from 1
SCHED_FIFO = 1


def may_take_realtime() -> bool:
    """Whether a process of this user may enter SCHED_FIFO 1 (CAP_SYS_NICE or RLIMIT_RTPRIO)."""
    probe = (
        "import os\n"
        "try:\n"
        "    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))\n"
        "except PermissionError:\n"
        "    print('no')\n"
        "else:\n"
        "    print('yes')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "yes"


def thread_policies(pid: int) -> dict[int, int]:
    """Every thread of ``pid`` and its scheduling policy."""
    policies = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        policies[int(task.name)] = int(fields[POLICY_FIELD - 3])  # after pid and (comm)
    return policies


def serve(tmp_path: Path, priority: str | None) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn with ``BODYBROKER_EVENT_LOOP_RT_PRIORITY=priority`` (None: unset, the default)."""
    unset = ("DATABASE_URL", "REDIS_URL", "BODYBROKER_EVENT_LOOP_RT_PRIORITY")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        DJANGO_SETTINGS_MODULE="bodybroker.settings.base",
        BODYBROKER_VAR_DIR=str(tmp_path),
        BODYBROKER_INTENT_UPDATER_IN_PROCESS="0",
        SECRET_KEY="test-only",
    )
    if priority is not None:
        env["BODYBROKER_EVENT_LOOP_RT_PRIORITY"] = priority
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bodybroker.asgi:application", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if web.poll() is not None:
            raise AssertionError(web.stdout.read().decode() if web.stdout else "uvicorn exited")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return web, port  # lifespan startup is complete before uvicorn listens
        time.sleep(0.1)
    web.kill()
    raise AssertionError("uvicorn did not listen within 60 s")


def stop(web: subprocess.Popen[bytes]) -> str:
    web.terminate()
    out, _ = web.communicate(timeout=20)
    return out.decode()


def test_the_event_loop_thread_alone_runs_fifo_where_the_process_may(tmp_path: Path) -> None:
    web, port = serve(tmp_path, "1")
    try:
        before = set(thread_policies(web.pid))
        # A Django view runs in a worker thread the loop starts now: it must not inherit FIFO.
        try:  # 503 here: the health page finds no engines, and says so from a worker thread
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=30).close()
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
        policies = thread_policies(web.pid)
    finally:
        log = stop(web)
    loop_thread = policies.pop(web.pid)  # uvicorn runs its loop on the main thread
    assert set(policies) - before, "the request started a worker thread"
    assert all(policy != SCHED_FIFO for policy in policies.values()), policies
    if may_take_realtime():
        assert loop_thread == SCHED_FIFO
    else:
        assert loop_thread != SCHED_FIFO
        assert "needs CAP_SYS_NICE" in log


def test_by_default_the_event_loop_stays_fair_and_asks_for_nothing(tmp_path: Path) -> None:
    """Real-time is opt-in (``make run`` opts in on the CPU default): unset, the loop neither
    takes SCHED_FIFO where it could nor complains where it could not."""
    web, _port = serve(tmp_path, None)
    try:
        policies = thread_policies(web.pid)
    finally:
        log = stop(web)
    assert SCHED_FIFO not in policies.values()
    assert "SCHED_FIFO" not in log


def test_priority_zero_leaves_the_event_loop_alone(tmp_path: Path) -> None:
    if not may_take_realtime():
        pytest.skip("this user cannot take SCHED_FIFO: nothing to leave alone")
    web, _port = serve(tmp_path, "0")
    try:
        policies = thread_policies(web.pid)
    finally:
        stop(web)
    assert SCHED_FIFO not in policies.values()


def drop_sys_nice() -> None:
    """In the child before exec: take CAP_SYS_NICE out of the bounding set, so root's program
    starts without it (as ``setpriv --bounding-set -sys_nice`` does)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_without_the_right_the_loop_stays_fair_and_says_why() -> None:
    """Without CAP_SYS_NICE (root drops it; anyone else has none) and with RLIMIT_RTPRIO 0."""
    probe = (
        "import os, resource, django\n"
        "resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'bodybroker.settings.test'\n"
        "django.setup()\n"
        "from bodybroker.realtime import raise_thread_priority\n"
        "said = raise_thread_priority(1)\n"
        "print(os.sched_getscheduler(0) == os.SCHED_FIFO, said)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=drop_sys_nice if os.geteuid() == 0 else None,  # noqa: PLW1509
    )
    fifo, said = out.stdout.strip().split(" ", 1)
    assert fifo == "False"
    assert "needs CAP_SYS_NICE or an RLIMIT_RTPRIO" in said
