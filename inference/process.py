"""Run a model server as a child process: start, wait until healthy, stop.

``EngineProcess`` starts ``python -m inference serve --tier T --engine E --port P``, which execs
the engine in place, so the child's pid is the engine's. The child gets its own process group
(and session), and ``stop()`` signals the whole group: an engine that forks workers (vLLM does)
leaves none behind. On Linux the child also gets SIGTERM if the process that started it dies,
so a killed launcher or test run does not orphan a model server.

Used by the ``make run`` launcher and by the test suite's engine fixture.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

from inference.errors import EngineStartError
from inference.profiles import Profile, get_profile

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask Linux to SIGTERM this process when its parent thread exits (survives exec)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EngineProcess:
    """One model server child process for a tier.

    ``port=None`` picks a free port. ``echo``, when given, receives the engine's output lines
    prefixed with ``[tier]`` (the ``make run`` launcher passes ``sys.stderr``); the last
    ``tail_lines`` lines are always kept for error messages.

    As a context manager it starts the engine, waits until healthy (``startup_timeout``) and
    stops it on exit.

    ``die_with_parent`` (Linux) kills the engine when the *thread* that started it exits: start
    engines from the main thread or a thread that lives as long as they should.
    """

    def __init__(
        self,
        tier: str,
        engine: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        model_path: str | None = None,
        n_threads: int | None = None,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
        echo: IO[str] | None = None,
        tail_lines: int = 200,
        startup_timeout: float = 120.0,
        die_with_parent: bool = True,
    ) -> None:
        self.profile: Profile = get_profile(tier, engine)
        self.tier = tier
        self.engine = self.profile.engine
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.model_path = model_path
        self.n_threads = n_threads
        self.extra_env = dict(env or {})
        self.python = python
        self.echo = echo
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._started_at: float | None = None

    def __repr__(self) -> str:
        return f"EngineProcess(tier={self.tier!r}, engine={self.engine!r}, url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        return self.profile.base_url(self.host, self.port)

    @property
    def served_model_name(self) -> str:
        return self.profile.served_model_name

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def command(self) -> list[str]:
        """The launcher command run in the child (it execs the engine itself)."""
        cmd = [
            self.python,
            "-m",
            "inference",
            "serve",
            "--tier",
            self.tier,
            "--engine",
            self.engine,
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        if self.model_path:
            cmd += ["--model", self.model_path]
        if self.n_threads is not None:
            cmd += ["--n-threads", str(self.n_threads)]
        return cmd

    def output_tail(self, lines: int = 40) -> str:
        """The engine's last ``lines`` output lines."""
        return "\n".join(list(self._tail)[-lines:])

    def start(self) -> EngineProcess:
        """Start the engine (does not wait for it to load; see ``wait_healthy``)."""
        if self._proc is not None:
            raise RuntimeError(f"{self!r} was already started")
        self.profile.check_installed()
        env = {**os.environ, **self.extra_env}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        use_pdeathsig = self.die_with_parent and sys.platform.startswith("linux")
        self._started_at = time.monotonic()
        self._proc = subprocess.Popen(  # noqa: S603 - argv built from our own profile
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if use_pdeathsig else None,
        )
        self._reader = threading.Thread(
            target=self._drain, name=f"engine-{self.tier}-output", daemon=True
        )
        self._reader.start()
        return self

    def _drain(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        prefix = f"[{self.tier}] "
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self._tail.append(line)
            if self.echo is not None:
                with contextlib.suppress(ValueError, OSError):
                    self.echo.write(prefix + line + "\n")
                    self.echo.flush()

    def _probe(self, timeout: float) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", self.profile.health_path)
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def wait_healthy(self, timeout: float | None = None, interval: float = 0.05) -> float:
        """Poll the health path until it answers 200; return seconds since ``start()``.

        Raises ``EngineStartError`` with the engine's last output lines if the process exits
        first or ``timeout`` (default ``startup_timeout``) passes. Does not stop the process.
        """
        proc = self._proc
        if proc is None or self._started_at is None:
            raise RuntimeError(f"{self!r} was not started")
        limit = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            code = proc.poll()
            if code is not None:
                self._join_reader()
                raise EngineStartError(
                    f"{self.tier} engine ({self.engine}) exited with code {code} during start-up",
                    output=self.output_tail(),
                    returncode=code,
                )
            if self._probe(timeout=min(1.0, max(0.05, deadline - time.monotonic()))):
                return time.monotonic() - self._started_at
            if time.monotonic() >= deadline:
                raise EngineStartError(
                    f"{self.tier} engine ({self.engine}) not healthy at "
                    f"{self.base_url}{self.profile.health_path} after {limit}s",
                    output=self.output_tail(),
                )
            time.sleep(interval)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the engine's process group, SIGKILL it after ``grace`` seconds.

        Returns the exit code (None if never started). Safe to call more than once.
        """
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait()
        # Workers the engine forked share its group; make sure none outlive it.
        self._signal_group(signal.SIGKILL)
        self._join_reader()
        return proc.returncode

    def _signal_group(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=2.0)

    def __enter__(self) -> EngineProcess:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
