"""``make run``'s supervisor on the real stack: every process up and healthy; a killed engine or
worker restarted while the service keeps answering; Ctrl-C leaves no orphan.

The stack is started as ``make run`` starts it: the seeds with ``DEBUG=1``, the stack itself with
``DEBUG`` off and no ``SECRET_KEY``, and its web port given as ``PORT`` in the environment,
which every process it starts inherits (the engines included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bodybroker import stack as supervisor
from bodybroker.stack import STATUS_FILE, Managed, read_status, restart_delay, tend, write_status
from inference.cpu_class import IDLE_CLASS_ENV
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


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    port: int
    var_dir: Path
    marker: str
    key: str
    output: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "".join(self.output[-60:])

    def health(self) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/health/"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 — loopback
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def chat(self, model: str, prompt: str) -> tuple[int, dict[str, Any]]:
        """``POST /v1/chat/completions`` for ``model``; a fresh prompt never hits the cache."""
        request = urllib.request.Request(  # noqa: S310 — loopback
            f"http://127.0.0.1:{self.port}/v1/chat/completions",
            data=json.dumps(
                {
                    "model": model,
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": 8,
                }
            ).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def wait_for(self, what: str, ready: Callable[[], bool], timeout_s: float) -> float:
        """Seconds until ``ready()``; fails naming ``what`` after ``timeout_s``."""
        started = time.monotonic()
        while not ready():
            assert self.process.poll() is None, f"the stack exited\n{self.log()}"
            assert time.monotonic() - started < timeout_s, f"{what} not within {timeout_s} s"
            time.sleep(0.25)
        return time.monotonic() - started


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    var_dir = tmp_path_factory.mktemp("stack")
    marker = f"BODYBROKER_STACK_TEST_MARKER={var_dir}"
    unset = {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "PORT"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        DJANGO_SETTINGS_MODULE="bodybroker.settings.base",
        BODYBROKER_VAR_DIR=str(var_dir),
        BODYBROKER_STACK_TEST_MARKER=str(var_dir),
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run(
        [*manage, "migrate", "--noinput"],
        cwd=ROOT,
        env={**env, "DEBUG": "1"},  # as `make run` migrates and seeds
        check=True,
        capture_output=True,
        timeout=120,
    )
    key = subprocess.run(
        [*manage, "create_api_key", "--name", "stack test", "--scopes", "infer"],
        cwd=ROOT,
        env={**env, "DEBUG": "1"},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    port, gold, silver = free_port(), free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bodybroker.stack",
            "--gold-port",
            str(gold),
            "--silver-port",
            str(silver),
            "--ready-timeout",
            "120",
        ],
        cwd=ROOT,
        env={**env, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    running = Stack(process, port, var_dir, marker, key)
    assert process.stdout is not None
    pipe = process.stdout

    def drain() -> None:  # keep reading so the stack never blocks on a full pipe
        for raw in pipe:
            running.output.append(raw.decode(errors="replace"))

    threading.Thread(target=drain, daemon=True).start()
    try:
        running.wait_for(
            "the banner", lambda: any("Body Broker is up" in line for line in running.output), 150
        )
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def exit_delays(proc: Managed, count: int, timeout_s: float) -> list[float]:
    """Run the supervisor's loop over ``proc`` until it has scheduled ``count`` restarts; the
    wait it chose after each exit."""
    env = dict(os.environ)
    supervisor.start([proc], env)
    delays: list[float] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(delays) < count:
            assert time.monotonic() < deadline, delays
            waiting, before = proc.restart_at is not None, time.monotonic()
            tend([proc], env)
            if not waiting and proc.restart_at is not None:
                delays.append(round(proc.restart_at - before, 1))
            time.sleep(0.05)
    finally:
        supervisor.stop([proc], grace_s=2)
    return delays


def test_a_crash_looping_process_is_retried_with_a_doubling_back_off() -> None:
    crasher = Managed("crasher", [sys.executable, "-c", "raise SystemExit(3)"])
    assert exit_delays(crasher, 4, timeout_s=30) == [1.0, 2.0, 4.0, 8.0]
    assert crasher.restarts == 3 and crasher.last_exit == 3
    assert [restart_delay(n) for n in (5, 6, 50)] == [16.0, 30.0, 30.0]


def test_a_process_that_stayed_up_is_restarted_after_the_first_delay_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor, "STABLE_AFTER_S", 0.3)
    sleeper = Managed("sleeper", [sys.executable, "-c", "import time; time.sleep(0.6)"])
    assert exit_delays(sleeper, 3, timeout_s=30) == [1.0, 1.0, 1.0]


def test_the_cpu_default_puts_game_frames_first_unless_told_otherwise() -> None:
    cpu: dict[str, str] = {}
    supervisor.game_frames_first(cpu)
    assert cpu == {"BODYBROKER_EVENT_LOOP_RT_PRIORITY": "1", IDLE_CLASS_ENV: "1"}

    chosen = {"BODYBROKER_EVENT_LOOP_RT_PRIORITY": "0", IDLE_CLASS_ENV: "0"}
    supervisor.game_frames_first(chosen)
    assert chosen == {"BODYBROKER_EVENT_LOOP_RT_PRIORITY": "0", IDLE_CLASS_ENV: "0"}

    # Engines elsewhere (the GPU profiles) leave the web's cores alone: nothing to put first.
    gpu = {"BODYBROKER_ENGINE": "gpu"}
    supervisor.game_frames_first(gpu)
    assert gpu == {"BODYBROKER_ENGINE": "gpu"}


def test_the_status_file_is_read_only_while_its_supervisor_lives(tmp_path: Path) -> None:
    proc = Managed("beat", [sys.executable, "-c", "import time; time.sleep(30)"])
    supervisor.start([proc], dict(os.environ))
    try:
        write_status(tmp_path / STATUS_FILE, [proc])
        found = read_status(tmp_path)
        assert found == {"beat": proc.snapshot()}
        assert found["beat"]["state"] == "running" and found["beat"]["restarts"] == 0
    finally:
        supervisor.stop([proc], grace_s=2)
    # A file left by a supervisor that is gone says nothing about the processes running now.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    body = json.loads((tmp_path / STATUS_FILE).read_text())
    body["supervisor_pid"] = int(gone.stdout)
    (tmp_path / STATUS_FILE).write_text(json.dumps(body))
    assert read_status(tmp_path) is None
    assert read_status(tmp_path / "nowhere") is None


@pytest.mark.engine
def test_the_stack_comes_up_healthy_and_reports_its_processes(stack: Stack) -> None:
    status, body = stack.health()
    assert status == 200, body
    processes = body["processes"]
    assert {"gold", "silver", "worker", "beat", "web"} <= set(processes)
    for name, proc in processes.items():
        assert proc["state"] == "running" and proc["restarts"] == 0, (name, proc)
    assert len(processes_with(stack.marker)) >= 5  # two engines, worker (+ its pool), beat, web


@pytest.mark.engine
def test_create_api_key_as_the_readme_writes_it_works_beside_the_stack(stack: Stack) -> None:
    """A plain shell: no DEBUG, no SECRET_KEY, no settings module; only where the stack keeps
    its state (``var/`` by default). The key it prints works on the running stack at once."""
    shell = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "DJANGO_SETTINGS_MODULE", "PORT"}
        and k not in {"DATABASE_URL", "REDIS_URL"}
    }
    shell["BODYBROKER_VAR_DIR"] = str(stack.var_dir)
    made = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "--name", "NAME", "--scopes", "infer"],
        cwd=ROOT,
        env=shell,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    request = urllib.request.Request(  # noqa: S310 — loopback
        f"http://127.0.0.1:{stack.port}/v1/models",
        headers={"Authorization": f"Bearer {made.stdout.strip()}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200
    assert (stack.var_dir / "secret_key").stat().st_mode & 0o777 == 0o600


@pytest.mark.engine
def test_the_stack_shows_the_products_own_pages(stack: Stack) -> None:
    """``make run`` is a demo of the product: an unknown page is the console's 404, never
    Django's technical page with its list of every URL pattern."""
    url = f"http://127.0.0.1:{stack.port}/no-such-page/"
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(url, timeout=10)  # noqa: S310 — loopback
    assert answer.value.code == 404
    page = answer.value.read().decode()
    assert "Nothing here" in page and "Body Broker" in page
    assert "URLconf" not in page and "api/v1/" not in page
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/favicon.ico", timeout=10) as icon:
        assert icon.headers["Content-Type"].startswith("image/svg+xml")  # noqa: S310


@pytest.mark.engine
@pytest.mark.parametrize("tier", ["silver", "gold"])
def test_a_killed_engine_comes_back_while_the_fallback_chain_answers(
    stack: Stack, tier: str
) -> None:
    _, body = stack.health()
    before = body["processes"][tier]
    os.kill(before["pid"], signal.SIGKILL)
    killed_at = time.monotonic()

    # The engine is gone; a request for its tier is answered by the chain's other link.
    status, answer = stack.chat(tier, f"Who keeps the {tier} ledger now?")
    assert status == 200, answer
    assert answer["x_bodybroker"]["source"] == "fallback_model", answer
    assert answer["choices"][0]["message"]["content"]

    def back() -> bool:
        status, body = stack.health()
        now = body.get("processes", {}).get(tier, {})
        return (
            status == 200
            and now.get("restarts") == before["restarts"] + 1
            and now.get("state") == "running"
            and body["checks"][f"engine:{tier}"]["state"] == "up"
        )

    stack.wait_for(f"{tier} restarted and healthy", back, 60)
    print(f"{tier} back {time.monotonic() - killed_at:.1f} s after SIGKILL")
    assert time.monotonic() - killed_at < 60
    assert any(f"{tier} exited with code -9" in line for line in stack.output), stack.log()
    status, answer = stack.chat(tier, f"And who kept the {tier} ledger before?")
    assert status == 200, answer


@pytest.mark.engine
def test_a_killed_worker_is_restarted_and_its_pool_does_not_linger(stack: Stack) -> None:
    _, body = stack.health()
    before = body["processes"]["worker"]
    os.kill(before["pid"], signal.SIGKILL)

    def back() -> bool:
        status, body = stack.health()
        now = body.get("processes", {}).get("worker", {})
        return (
            status == 200
            and now.get("restarts") == before["restarts"] + 1
            and now.get("state") == "running"
        )

    stack.wait_for("worker restarted and healthy", back, 60)
    # The killed worker's pool children were stopped with it, not left to consume the queues.
    stack.wait_for("the old worker's group gone", lambda: not group_alive(before["pid"]), 10)


@pytest.mark.engine
def test_a_killed_web_server_is_restarted_and_answers_again(stack: Stack) -> None:
    _, body = stack.health()
    before = body["processes"]["web"]
    os.kill(before["pid"], signal.SIGKILL)

    def back() -> bool:
        try:
            status, body = stack.health()
        except OSError:  # nothing listening until the new web server is up
            return False
        now = body.get("processes", {}).get("web", {})
        return status == 200 and now.get("restarts") == before["restarts"] + 1

    stack.wait_for("web restarted and healthy", back, 60)


@pytest.mark.engine
def test_ctrl_c_stops_every_process(stack: Stack) -> None:
    stack.process.send_signal(signal.SIGINT)
    stack.process.wait(timeout=60)
    assert stack.process.returncode == 0
    deadline = time.monotonic() + 10
    while processes_with(stack.marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with(stack.marker) == []
    assert not (stack.var_dir / STATUS_FILE).exists()
