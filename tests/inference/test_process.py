"""EngineProcess: a real model server as a child process, started, probed and stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from inference.cpu_class import CGROUP_ROOTS, IDLE_CGROUP, IDLE_CLASS_ENV, current_cgroup
from inference.errors import EngineNotInstalled, EngineStartError
from inference.process import EngineProcess, free_port

pytestmark = pytest.mark.engine


def _port_accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_engine_becomes_healthy_and_stop_leaves_nothing_running() -> None:
    engine = EngineProcess("silver", "cpu", env={IDLE_CLASS_ENV: "1"})  # as `make run` asks
    engine.start()
    try:
        seconds = engine.wait_healthy(timeout=60)
        assert seconds < 60
        assert engine.running
        assert _port_accepts(engine.port)
        pid = engine.pid
        assert pid is not None
        # The CPU engine runs niced below the web process it shares the cores with, and so
        # does its session where the kernel schedules sessions first (autogroup).
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, ours + 19)
        autogroup = Path(f"/proc/{pid}/autogroup")
        if autogroup.exists():
            assert autogroup.read_text().split()[-1] == "19"
        # ...and, asked to, in the idle class: SCHED_IDLE, and an idle cgroup where the hierarchy
        # is ours to write (root here and in CI), so a woken web process takes the core at once.
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        if any(os.access(root / "cpu.idle", os.W_OK) for root in CGROUP_ROOTS):
            assert current_cgroup(pid) == f"/{IDLE_CGROUP}"
            group = next(r / IDLE_CGROUP for r in CGROUP_ROOTS if (r / IDLE_CGROUP).exists())
            assert (group / "cpu.idle").read_text().strip() == "1"
    finally:
        code = engine.stop(grace=10)

    assert not engine.running
    assert code is not None
    assert not _port_accepts(engine.port)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    assert engine.stop() == code  # idempotent


def test_engine_that_cannot_load_its_model_fails_start_with_its_output(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a gguf file")

    with pytest.raises(EngineStartError) as exc_info:
        with EngineProcess("gold", "cpu", model_path=str(bogus), startup_timeout=60):
            pass

    err = exc_info.value
    assert err.returncode not in (None, 0)
    assert str(bogus) in err.output or "gguf" in err.output.lower()
    assert "last engine output" in str(err)


def test_missing_gpu_engine_is_refused_before_anything_is_spawned(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = EngineProcess("silver", "vllm")

    with pytest.raises(EngineNotInstalled):
        engine.start()
    assert engine.pid is None


def test_launcher_command_runs_the_serve_cli_for_the_tier() -> None:
    engine = EngineProcess("gold", "cpu", port=9555, n_threads=1)

    cmd = engine.command()

    assert cmd[1:4] == ["-m", "inference", "serve"]
    assert cmd[cmd.index("--tier") + 1] == "gold"
    assert cmd[cmd.index("--port") + 1] == "9555"
    assert cmd[cmd.index("--n-threads") + 1] == "1"
    assert engine.base_url == "http://127.0.0.1:9555"
    assert engine.served_model_name == "gold"


def test_an_engine_outside_its_own_session_leaves_the_sessions_priority_alone() -> None:
    """Started from a shell, the launcher must not renice the shell's whole session.

    Run in a throwaway session: its leader starts a child that lowers its own priority as the
    launcher does, then reports the session's autogroup nice value.
    """
    if not Path("/proc/self/autogroup").exists():
        pytest.skip("no autogroup scheduling on this kernel")
    script = (
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', 'from inference.__main__ import _lower_priority;"
        " _lower_priority(19)'], check=True)\n"
        "print(open('/proc/self/autogroup').read().split()[-1])\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        capture_output=True,
        text=True,
        start_new_session=True,
        check=True,
        timeout=30,
    )
    assert done.stdout.strip() == "0"
