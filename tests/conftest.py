"""The suite's cast and its real processes.

People: alice (writer), erin (editor), otto (operator), adam (admin). Keys are minted per test
with exactly the scopes a test names. Processes, started once per session and only when a test
asks: the Gold and Silver CPU engines (real llama.cpp serving SmolLM2) and a real Celery worker
consuming the suite's broker (Redis in CI, the filesystem broker otherwise) against the test
database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from apps.security.scopes import ADMIN_ROLE, EDITOR, OPERATOR, WRITER
from apps.security.services import api_key_create, roles_ensure
from inference.process import EngineProcess
from tests.browser_support import (  # noqa: F401
    browser,
    console_errors,
    live_server_url,
    page_as,
)

ROOT = Path(__file__).resolve().parent.parent


# --- people and keys ---------------------------------------------------------------------------


def _person(username: str, role: str, **extra: Any) -> User:
    roles_ensure()
    user = User.objects.create_user(username=username, password=f"{username}-pw", **extra)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def alice(db: None) -> User:
    """A writer."""
    return _person("alice", WRITER)


@pytest.fixture
def erin(db: None) -> User:
    """An editor."""
    return _person("erin", EDITOR)


@pytest.fixture
def otto(db: None) -> User:
    """An operator."""
    return _person("otto", OPERATOR)


@pytest.fixture
def adam(db: None) -> User:
    """An admin."""
    return _person("adam", ADMIN_ROLE, is_staff=True)


@pytest.fixture
def make_key(db: None) -> Callable[..., str]:
    """Mint an API key with the given scopes; returns the raw key."""

    def make(*scopes: str, name: str = "test key") -> str:
        return api_key_create(name=name, scopes=scopes)[1]

    return make


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture(autouse=True)
def _no_failed_signins_counted() -> None:
    """Failed sign-ins are counted in the cache, which outlives a test (and on Redis a run):
    each test starts with none counted for the cast or the test client's address."""
    from apps.security.signin import signin_counts_clear

    signin_counts_clear(
        usernames=("alice", "erin", "otto", "adam", "amy"), addresses=("127.0.0.1",)
    )


def bearer(raw_key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


# --- the test database -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's test database, which can then be dropped at the end of the session.

    Worker threads of the in-process ASGI servers and of ``sync_to_async`` keep the database
    connections they opened, and PostgreSQL refuses to drop a database that still has sessions
    ("database "test_test" is being accessed by other users"): the suite's own stray
    sessions are ended first, so no test database is left behind.
    """
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


# --- real processes ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def engines() -> Iterator[dict[str, str]]:
    """Real Gold and Silver CPU engines; the tier settings point at them for the session."""
    started = [EngineProcess("gold"), EngineProcess("silver")]
    for process in started:
        process.start()
    try:
        for process in started:
            process.wait_healthy(timeout=120)
        urls = {"gold": started[0].base_url, "silver": started[1].base_url}
        saved = {tier: dict(conf) for tier, conf in settings.BODYBROKER_TIERS.items()}
        tiers = settings.BODYBROKER_TIERS
        tiers["gold"].update(
            urls=[urls["gold"]],
            model="gold",
            fallback_urls=[urls["silver"]],
            fallback_model="silver",
        )
        tiers["silver"].update(
            urls=[urls["silver"]],
            model="silver",
            fallback_urls=[urls["gold"]],
            fallback_model="gold",
        )
        tiers["bronze"].update(
            urls=[urls["silver"]],
            model="silver",
            fallback_urls=[urls["gold"]],
            fallback_model="gold",
        )
        yield urls
        for tier, conf in saved.items():
            settings.BODYBROKER_TIERS[tier].update(conf)
    finally:
        for process in started:
            process.stop()


def _database_url() -> str:
    """The URL of the *test* database, for processes that must share it."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    user = db["USER"] or ""
    auth = f"{user}:{db['PASSWORD']}@" if db["PASSWORD"] else (f"{user}@" if user else "")
    return f"postgres://{auth}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None, django_db_blocker: Any, engines: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process on every queue, sharing the test database and broker."""
    from bodybroker.celery import app

    with django_db_blocker.unblock():
        database_url = _database_url()
    app.control.purge()  # messages a killed earlier run left behind
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bodybroker.settings.test",
        "DATABASE_URL": database_url,
        "BODYBROKER_GOLD_URLS": engines["gold"],
        "BODYBROKER_SILVER_URLS": engines["silver"],
        "BODYBROKER_BRONZE_URLS": engines["silver"],
        "BODYBROKER_BRONZE_FALLBACK_URLS": engines["gold"],
    }
    hostname = f"test-worker-{os.getpid()}@localhost"
    log = open(ROOT / "var" / "test" / "celery-worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bodybroker",
            "worker",
            "-Q",
            "bronze,default,distill",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--hostname",
            hostname,
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_heartbeat(django_db_blocker, hostname, worker)
        _suite_worker.update(hostname=hostname, blocker=django_db_blocker)
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()


_suite_worker: dict[str, Any] = {}


def _transactional(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", ())
    return bool(marker and marker.kwargs.get("transaction")) or "transactional_db" in fixtures


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Before a transactional test's tables are flushed, let the suite's worker go idle.

    A test may leave tasks behind (indexing, a queued Bronze job). If the worker were still
    running one, its writes and the flush's TRUNCATE could deadlock. So: drop what is queued,
    then wait for a heartbeat, written after the purge, that says no task is running.
    """
    if _suite_worker and _transactional(item):
        _drain_suite_worker()
    return (yield)


def _drain_suite_worker() -> None:
    from django.utils import timezone

    from apps.admin_ops.models import WorkerHeartbeat
    from bodybroker.celery import app

    app.control.purge()
    purged_at = timezone.now()
    deadline = time.monotonic() + 90
    with _suite_worker["blocker"].unblock():
        while time.monotonic() < deadline:
            beat = WorkerHeartbeat.objects.filter(hostname=_suite_worker["hostname"]).first()
            if beat is not None and beat.last_seen > purged_at and beat.active == 0:
                return
            time.sleep(0.1)


def _wait_for_heartbeat(blocker: Any, hostname: str, worker: subprocess.Popen[bytes]) -> None:
    from apps.admin_ops.models import WorkerHeartbeat

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            log = (ROOT / "var" / "test" / "celery-worker.log").read_text()[-3000:]
            raise RuntimeError(f"celery worker exited with {worker.returncode}:\n{log}")
        with blocker.unblock():
            if WorkerHeartbeat.objects.filter(hostname=hostname).exists():
                return
        time.sleep(0.2)
    raise RuntimeError("celery worker did not report a heartbeat within 60 s")
