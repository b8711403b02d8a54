"""Headless-browser testing: the real ASGI app served on a free port, and Chromium driven by
Playwright, signed in as any of the cast.

Chromium comes from Debian's package (``apt-get install chromium``; ``make test`` installs it
when missing), never from ``playwright install``. Tests using these fixtures are marked
``browser`` and need ``@pytest.mark.django_db(transaction=True)`` so the server thread sees
their rows.

    @pytest.mark.browser
    @pytest.mark.django_db(transaction=True)
    def test_something(page_as, live_server_url):
        page = page_as("alice")          # a fresh, signed-in browser context
        page.goto(f"{live_server_url}/lore/")

Every page a context opens is watched: a console error or an uncaught script error fails the
test at teardown, listing each one with the page it came from. A test that expects one says so
with ``console_errors.allow(r"regex", why="...")`` (the ``console_errors`` fixture). Tests that
drive Chromium themselves call ``watch_console(context)`` and ``.assert_clean()``.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

CHROMIUM = os.environ.get("BODYBROKER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
DEFAULT_TIMEOUT_MS = 15_000


@dataclass
class ConsoleErrors:
    """The console errors and uncaught script errors of every page in the watched contexts."""

    seen: list[str] = field(default_factory=list)
    allowed: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def watch(self, context: Any) -> Any:
        context.on("console", self._on_console)
        context.on("weberror", self._on_web_error)
        return context

    def allow(self, pattern: str, *, why: str) -> None:
        """Let errors matching ``pattern`` through: a test that provokes one on purpose (an
        answer with a 4xx status is logged by Chromium as a failed resource)."""
        assert why, "say why this error is expected"
        self.allowed.append((re.compile(pattern), why))

    def _record(self, where: str, text: str) -> None:
        if any(pattern.search(text) for pattern, _ in self.allowed):
            return
        with self._lock:
            self.seen.append(f"{where}: {text}")

    def _on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        location = message.location or {}
        source = location.get("url") or (message.page.url if message.page else "?")
        self._record(f"console error on {source}", message.text)

    def _on_web_error(self, web_error: Any) -> None:
        page = web_error.page
        self._record(f"page error on {page.url if page else '?'}", str(web_error.error))

    def assert_clean(self) -> None:
        with self._lock:
            errors = list(self.seen)
        assert not errors, "the browser reported errors:\n" + "\n".join(errors)


def watch_console(context: Any) -> ConsoleErrors:
    """Watch one browser context a test created itself; call ``.assert_clean()`` at the end."""
    errors = ConsoleErrors()
    errors.watch(context)
    return errors


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def live_server_url() -> Iterator[str]:
    """The real ASGI application (HTTP, websockets, MCP) under uvicorn in a thread of this
    process, so it shares the test database, settings and in-process layers."""
    import uvicorn

    from bodybroker.asgi import application

    port = _free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, lifespan="on", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-asgi-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live ASGI server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright — one per test module.

    Playwright's sync API keeps an asyncio loop running in the main thread while it is open, so
    no async test (nor ``anyio.run``) can share a module with browser tests; closing it at the
    end of the module gives later modules their event loop back."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make setup` (it installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop open in this thread, which Django's async-safety
    # check mistakes for async code calling the ORM; the tests' own ORM calls are plain sync.
    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if saved is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


@pytest.fixture
def console_errors() -> ConsoleErrors:
    """What ``page_as``'s pages logged as errors; ``console_errors.allow(...)`` for an expected
    one."""
    return ConsoleErrors()


@pytest.fixture
def page_as(
    browser: Any, live_server_url: str, console_errors: ConsoleErrors
) -> Iterator[Callable[[str], Any]]:
    """``page_as("alice")``: a new browser context signed in through the login form as one of
    the cast (password ``<name>-pw``). Contexts close after the test, which then fails if any of
    their pages logged a console error or threw."""
    contexts: list[Any] = []

    def sign_in(username: str) -> Any:
        context = console_errors.watch(browser.new_context(base_url=live_server_url))
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto("/accounts/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", f"{username}-pw")
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        return page

    yield sign_in
    for context in contexts:
        context.close()
    console_errors.assert_clean()
