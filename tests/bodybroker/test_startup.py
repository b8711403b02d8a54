"""The first minutes after start: engines bind their own port whatever the environment says,
``manage.py`` works in a plain shell beside ``make run``, no model loads on a request, the
gateway's first burst shares its key lookups, and unknown pages are the product's own."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.test import Client, RequestFactory

from apps.security import keycache
from bodybroker import error_pages
from inference.llama_server import drop_settings_environment
from inference.process import EngineProcess, free_port

ROOT = Path(__file__).resolve().parents[2]


def plain_shell(var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a shell that set nothing but where the state lives."""
    unset = {"DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "DJANGO_SETTINGS_MODULE", "PORT"}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in unset and k not in {"DATABASE_URL", "REDIS_URL"}
    }
    env.update(BODYBROKER_VAR_DIR=str(var_dir), **extra)
    return env


# --- PORT and the engines ----------------------------------------------------------------------


def test_the_engine_drops_every_variable_its_server_would_read_as_a_setting() -> None:
    environ = {"PORT": "18000", "host": "192.0.2.1", "Model": "x", "API_KEY": "k", "PATH": "/bin"}
    assert drop_settings_environment(environ) == ["API_KEY", "Model", "PORT", "host"]
    assert environ == {"PATH": "/bin"}


@pytest.mark.engine
def test_an_engine_started_with_port_set_binds_its_own_port() -> None:
    """``PORT=18000 make run``: every process inherits PORT; the engine's flag must win."""
    web_port = free_port()
    engine = EngineProcess(
        "gold", env={"PORT": str(web_port), "HOST": "192.0.2.1"}, tail_lines=100_000
    )
    with engine:
        assert engine.running
        assert f":{engine.port}" in engine.base_url
        assert "ignoring HOST, PORT" in engine.output_tail(100_000)
    with socket.socket() as probe:  # nothing took the web server's port meanwhile
        probe.bind(("127.0.0.1", web_port))


# --- the secret key ----------------------------------------------------------------------------

KEY_PROBE = (  # what manage.py does first
    "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'bodybroker.settings.base'); "
    "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
)


def read_secret(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", KEY_PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_debug_process_writes_the_local_secret_key_once_and_a_plain_shell_reads_it(
    tmp_path: Path,
) -> None:
    refused = read_secret(plain_shell(tmp_path))
    assert refused.returncode != 0 and "SECRET_KEY" in refused.stderr
    first = read_secret(plain_shell(tmp_path, DEBUG="1"))
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == first.stdout.strip()
    assert len(first.stdout.strip()) >= 50 and "insecure" not in first.stdout
    again = read_secret(plain_shell(tmp_path, DEBUG="1"))
    plain = read_secret(plain_shell(tmp_path))
    assert again.stdout == first.stdout == plain.stdout, plain.stderr
    given = read_secret(plain_shell(tmp_path, SECRET_KEY="from-the-environment"))
    assert given.stdout.strip() == "from-the-environment"


# --- models load before the first request ------------------------------------------------------

LIFESPAN_PROBE = """
import asyncio, json
from bodybroker.asgi import application
from apps.story.retrieval import embedder

async def main():
    seen = {"loaded_at_import": embedder._model is not None}  # the app is built by now
    inbox = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    done = asyncio.Event()

    async def send(message):
        seen[message["type"]] = embedder._model is not None
        done.set()

    task = asyncio.create_task(application({"type": "lifespan", "asgi": {"version": "3.0"}},
                                           inbox.get, send))
    await done.wait()
    await inbox.put({"type": "lifespan.shutdown"})
    await task
    print(json.dumps(seen))

asyncio.run(main())
"""


def start_up(tmp_path: Path, preload: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", LIFESPAN_PROBE],
        cwd=ROOT,
        env=plain_shell(tmp_path, SECRET_KEY="x", BODYBROKER_PRELOAD_MODELS=preload),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return seen


def test_the_lore_embedder_is_loaded_before_the_web_process_reports_ready(
    tmp_path: Path,
) -> None:
    """uvicorn accepts connections only after ``lifespan.startup.complete``: the first game
    socket and the first search find the model loaded."""
    seen = start_up(tmp_path, "1")
    assert seen["loaded_at_import"] is False
    assert seen["lifespan.startup.complete"] is True


def test_without_preloading_start_up_leaves_the_model_to_the_first_use(tmp_path: Path) -> None:
    seen = start_up(tmp_path, "0")
    assert seen["loaded_at_import"] is False
    assert seen["lifespan.startup.complete"] is False


# --- the gateway's first burst -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_requests_that_miss_the_key_cache_together_share_one_lookup(
    make_key: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgiref.sync import sync_to_async

    raw = await sync_to_async(make_key)("infer")
    keycache.forget_all()
    lookups: list[str] = []
    real_lookup = keycache._lookup

    def counted(key: str) -> Any:
        lookups.append(key)
        return real_lookup(key)

    monkeypatch.setattr(keycache, "_lookup", counted)
    found = await asyncio.gather(*(keycache.cached_api_key(raw) for _ in range(32)))
    assert len(lookups) == 1
    assert len({key.pk for key in found}) == 1 and found[0] is not None
    wrong = await asyncio.gather(*(keycache.cached_api_key(raw + "x") for _ in range(8)))
    assert wrong == [None] * 8 and len(lookups) == 2
    keycache.forget_all()


# --- the product's own error pages -------------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_page_is_the_consoles_404_and_an_unknown_api_path_is_json() -> None:
    page = Client().get("/no-such-page/")
    assert page.status_code == 404
    html = page.content.decode()
    assert "Nothing here" in html and "/no-such-page/" in html and 'class="topbar"' in html
    assert "URLconf" not in html
    api = Client().get("/api/v1/no-such-thing")
    assert api.status_code == 404
    assert api.json()["error"]["type"] == "not_found"


@pytest.mark.django_db
def test_forbidden_bad_and_failed_pages_are_the_products_own() -> None:
    factory = RequestFactory()
    request = factory.get("/lore/secret")
    request.user = AnonymousUser()
    forbidden = error_pages.permission_denied(request, PermissionDenied())
    assert forbidden.status_code == 403 and b"Not allowed" in forbidden.content
    assert b"Sign in" in forbidden.content
    bad = error_pages.bad_request(factory.get("/lore/"), ValueError())
    assert bad.status_code == 400 and b"could not be read" in bad.content
    failed = error_pages.server_error(factory.get("/jobs/"))
    assert failed.status_code == 500 and b"Something went wrong" in failed.content
    assert b'class="topbar"' in failed.content
    api_failed = error_pages.server_error(factory.get("/api/v1/jobs/"))
    assert api_failed.status_code == 500
    assert json.loads(api_failed.content)["error"]["type"] == "server_error"
    api_forbidden = error_pages.permission_denied(factory.get("/v1/models"), PermissionDenied())
    assert json.loads(api_forbidden.content)["error"]["type"] == "permission_denied"


@pytest.mark.django_db
def test_a_view_that_fails_answers_the_500_page(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.bodybroker.failing_urls"
    client = Client(raise_request_exception=False)
    answer = client.get("/fails/")
    assert answer.status_code == 500 and b"Something went wrong" in answer.content


@pytest.mark.django_db
def test_the_favicon_is_linked_and_served() -> None:
    login = Client().get("/accounts/login/")
    assert b'rel="icon"' in login.content
    icon = Client().get("/favicon.ico")
    assert icon.status_code == 302
    served = Client().get(icon["Location"])
    assert served.status_code == 200 and served["Content-Type"].startswith("image/svg+xml")
